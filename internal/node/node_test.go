package node

import (
	"strings"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	got := MergeEnv([]string{"A=1", "B=2", "PATH=/bin"}, []string{"B=3", "C=4", "A=5"})
	want := "A=5 B=3 PATH=/bin C=4"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

func TestQuote(t *testing.T) {
	got := Quote([]string{"vtysh", "-c", "show ip route", "it's"})
	want := `vtysh -c 'show ip route' 'it'\''s'`
	if got != want {
		t.Fatalf("Quote = %s, want %s", got, want)
	}
}

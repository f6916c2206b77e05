package console

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "line %d\n", i)
		if i == 5 {
			b.WriteString("backbone-init: mount /run: permission denied\n")
		}
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := Tail(p, 3)
	if !strings.HasSuffix(got, "line 47\nline 48\nline 49") {
		t.Errorf("Tail does not end with the last 3 lines:\n%s", got)
	}
	if !strings.Contains(got, "backbone-init: mount /run: permission denied") || strings.Contains(got, "line 5\n") {
		t.Errorf("Tail should bring the init's error line, and only key lines, from before the tail:\n%s", got)
	}
	plain := filepath.Join(t.TempDir(), "plain.log")
	os.WriteFile(plain, []byte("a\nb\nc\n"), 0o644)
	if got := Tail(plain, 2); got != "b\nc" {
		t.Errorf("Tail without key lines = %q, want the last lines only", got)
	}
	if !strings.Contains(Tail(p+"x", 3), "no ") {
		t.Error("Tail of a missing file should say so")
	}
}

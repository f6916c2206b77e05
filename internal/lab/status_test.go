package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// The status script, run by a real sh, reads pid files and /proc: a live
// process is up, a gone one down, watchfrr is left out.
func TestStatusScript(t *testing.T) {
	frr, node := t.TempDir(), t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	files := map[string]int{
		filepath.Join(frr, "zebra.pid"):    os.Getpid(),
		filepath.Join(frr, "ospfd.pid"):    dead.Process.Pid,
		filepath.Join(frr, "watchfrr.pid"): os.Getpid(),
		filepath.Join(node, "charon.pid"):  os.Getpid(),
	}
	for f, pid := range files {
		if err := os.WriteFile(f, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("sh", "-c", statusScript(frr, node)).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := parseStatus(string(out))
	want := []DaemonStatus{
		{Name: "ospfd", PID: dead.Process.Pid, Running: false},
		{Name: "zebra", PID: os.Getpid(), Running: true},
		{Name: "charon", PID: os.Getpid(), Running: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("status %+v, want %+v\n%s", got, want, out)
	}
	if d := Healthy([]NodeStatus{{Up: true, Daemons: got}}); d != 1 {
		t.Errorf("Healthy counts %d down, want 1", d)
	}
}

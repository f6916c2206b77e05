package lab

import (
	"strings"
	"testing"
)

// The chaos scenarios restart single daemons with FRRDaemonArgv: it must
// stay the command line of the start script.
func TestFRRDaemonArgvMatchesStartScript(t *testing.T) {
	s := nodeStart{Node: "pe1", Daemons: []string{"ospfd", "ldpd"}, ConfigDir: "/c", NodeDir: "/n"}
	script := startScript(s, phaseFRR)
	for _, d := range []string{"zebra", "ospfd", "ldpd"} {
		if line := strings.Join(FRRDaemonArgv(d), " "); !strings.Contains(script, line) {
			t.Errorf("start script does not start %s as %q:\n%s", d, line, script)
		}
	}
}

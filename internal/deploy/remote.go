package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/render/host"
)

// On each router, backbone keeps its generations under Root:
//
//	generations/0/           how every path backbone manages was before it
//	generations/N/manifest   one line per file: ORDER APPLY MODE OWNER SHA256 PATH DEVICE
//	generations/N/files/...  the files, at their paths
//	generations/N/apply.sh   the apply program (check, switch, rollback)
//	generations/N/parent     the generation it replaced
//	current -> generations/N the running one
//
// A switch runs as a transient systemd unit, so that a lost SSH session
// does not cut it in half; an armed rollback is a transient systemd timer.
const (
	Root         = "/var/lib/backbone"
	rollbackUnit = "backbone-rollback"
)

//go:embed apply.sh
var applyScript []byte

// remote is one router as deploy sees it.
type remote struct {
	name string
	r    node.Runner
	host *intent.Host
	// What is on it.
	current     int
	generations []int
	armed       bool
	tools       map[string]bool
}

func (m *remote) run(ctx context.Context, script string, args ...string) (string, error) {
	out, err := node.Output(ctx, m.r, append([]string{"sh", "-c", script, "sh"}, args...)...)
	return string(out), err
}

// inspect reads the router's generations and tools.
func (m *remote) inspect(ctx context.Context) error {
	out, err := m.run(ctx, `R=`+Root+`
echo "current $(readlink $R/current 2>/dev/null | sed 's|.*/||')"
echo "generations $(ls $R/generations 2>/dev/null | tr '\n' ' ')"
echo "armed $(systemctl is-active `+rollbackUnit+`.timer 2>/dev/null)"
for t in vtysh swanctl systemctl systemd-run flock sha256sum base64 tar nmcli networkctl; do
	command -v $t >/dev/null 2>&1 && echo "tool $t"
done
[ -x /usr/lib/frr/frr-reload.py ] && echo "tool frr-reload.py"
for s in NetworkManager systemd-networkd frr strongswan; do
	systemctl -q is-active $s 2>/dev/null && echo "active $s"
done
true`)
	if err != nil {
		return err
	}
	m.tools = map[string]bool{}
	m.generations = nil
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "current":
			m.current, _ = strconv.Atoi(strings.TrimSpace(v))
		case "generations":
			for _, g := range strings.Fields(v) {
				if n, err := strconv.Atoi(g); err == nil {
					m.generations = append(m.generations, n)
				}
			}
		case "armed":
			m.armed = strings.TrimSpace(v) == "active"
		case "tool":
			m.tools[v] = true
		case "active":
			m.tools["active:"+v] = true
		}
	}
	sort.Ints(m.generations)
	return nil
}

// missing says what the router lacks for its flavour, with the package
// that provides it.
func (m *remote) missing(needIPsec bool) []string {
	redhat := m.host.RedHat()
	pkg := func(debian, rh string) string {
		if redhat {
			return rh
		}
		return debian
	}
	need := []struct{ tool, pkg string }{
		{"vtysh", "frr"}, {"frr-reload.py", pkg("frr-pythontools", "frr")},
		{"systemctl", "systemd"}, {"systemd-run", "systemd"}, {"flock", "util-linux"},
		{"sha256sum", "coreutils"}, {"base64", "coreutils"}, {"tar", "tar"},
	}
	if needIPsec {
		need = append(need, struct{ tool, pkg string }{"swanctl", pkg("strongswan-swanctl and charon-systemd", "strongswan")})
	}
	switch m.host.Network {
	case intent.NetworkManager:
		need = append(need, struct{ tool, pkg string }{"nmcli", pkg("network-manager", "NetworkManager")})
	case intent.NetworkD:
		need = append(need, struct{ tool, pkg string }{"networkctl", "systemd"})
	}
	var out []string
	for _, n := range need {
		if !m.tools[n.tool] {
			out = append(out, fmt.Sprintf("%s (install %s)", n.tool, n.pkg))
		}
	}
	stack := map[string]string{intent.NetworkManager: "NetworkManager", intent.NetworkD: "systemd-networkd"}[m.host.Network]
	if !m.tools["active:"+stack] {
		out = append(out, fmt.Sprintf("a running %s (the intent says network: %s)", stack, m.host.Network))
	}
	return out
}

// live is a file as it is on the router.
type live struct {
	exists bool
	mode   string // octal, as stat prints it
	owner  string
	data   []byte
}

// read fetches the named files as they are on the router.
func (m *remote) read(ctx context.Context, paths []string) (map[string]live, error) {
	out, err := m.run(ctx, `for p in "$@"; do
	if [ -e "$p" ]; then echo "F $(stat -c '%a %U:%G' "$p") $p"; base64 -w0 <"$p"; echo; else echo "A - - $p"; echo; fi
done`, paths...)
	if err != nil {
		return nil, err
	}
	got := map[string]live{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) != 4 || !sc.Scan() {
			return nil, fmt.Errorf("%s: unexpected answer while reading files: %q", m.name, sc.Text())
		}
		l := live{exists: f[0] == "F", mode: f[1], owner: f[2]}
		if l.exists {
			if l.data, err = base64.StdEncoding.DecodeString(sc.Text()); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", m.name, f[3], err)
			}
		}
		got[f[3]] = l
	}
	return got, sc.Err()
}

// manifest lists a generation's files.
func manifest(files []host.File) []byte {
	var b strings.Builder
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		dev := f.Device
		if dev == "" {
			dev = "-"
		}
		fmt.Fprintf(&b, "%d %s %o %s %s %s %s\n", f.Order, f.Apply, f.Mode.Perm(), f.Owner, hex.EncodeToString(sum[:]), f.Path, dev)
	}
	return []byte(b.String())
}

// managed reads the paths the router's current generation manages.
func (m *remote) managed(ctx context.Context) ([]string, error) {
	if m.current == 0 {
		return nil, nil
	}
	out, err := m.run(ctx, `cat `+Root+`/current/manifest`)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 6 {
			paths = append(paths, f[5])
		}
	}
	return paths, nil
}

// upload puts generation n on the router (staged, then moved into
// place: a generation is there whole or not at all).
func (m *remote) upload(ctx context.Context, n int, files []host.File, parent int, run, note string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	add := func(name string, data []byte, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, f := range files {
		if err := add(path.Join("files", f.Path), f.Data, 0o600); err != nil {
			return err
		}
	}
	for _, x := range []struct {
		name string
		data []byte
		mode int64
	}{
		{"manifest", manifest(files), 0o644},
		{"apply.sh", applyScript, 0o755},
		{"parent", fmt.Appendf(nil, "%d\n", parent), 0o644},
		{"run", []byte(run + "\n"), 0o644},
		{"note", []byte(note + "\n"), 0o644},
	} {
		if err := add(x.name, x.data, x.mode); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	stage := fmt.Sprintf("%s/staging.%d", Root, n)
	script := fmt.Sprintf(`set -e
umask 077
mkdir -p %[1]s/generations
rm -rf %[2]s
mkdir -p %[2]s
tar -x -C %[2]s
rm -rf %[1]s/generations/%[3]d
mv %[2]s %[1]s/generations/%[3]d`, Root, stage, n)
	_, err := node.Output(ctx, runnerWithStdin{m.r, &buf}, "sh", "-c", script)
	return err
}

// runnerWithStdin feeds a fixed input to the command it runs.
type runnerWithStdin struct {
	node.Runner
	in io.Reader
}

func (r runnerWithStdin) Run(ctx context.Context, c node.Cmd) error {
	c.Stdin = r.in
	return r.Runner.Run(ctx, c)
}

func (m *remote) apply(ctx context.Context, action string, n int) (string, error) {
	return m.run(ctx, fmt.Sprintf("/bin/sh %s/generations/%d/apply.sh %s %d 2>&1", Root, n, action, n))
}

// switchTo makes generation n (or, for a rollback, an older one) the
// running one. It runs as a transient systemd unit: if the SSH session
// is lost, the switch still completes. Its output goes to a log file on
// the router, read back when it ends: with --pipe the unit would write to
// the session's pipe and die of SIGPIPE, half done, when the session goes.
func (m *remote) switchTo(ctx context.Context, action string, n, program int) (string, error) {
	unit := fmt.Sprintf("backbone-apply-%d-%d", n, time.Now().UnixNano()%1e6)
	return m.run(ctx, fmt.Sprintf(`mkdir -p %[1]s/log
log=%[1]s/log/%[2]s.log
systemd-run --quiet --wait --collect --unit=%[2]s --property=TimeoutStartSec=300 \
	--property=StandardOutput=append:$log --property=StandardError=append:$log \
	/bin/sh %[1]s/generations/%[3]d/apply.sh %[4]s %[5]d
rc=$?
cat "$log" 2>/dev/null
exit $rc`, Root, unit, program, action, n))
}

// arm sets the automatic rollback to generation to, firing after d
// unless confirmed.
func (m *remote) arm(ctx context.Context, to, program int, d time.Duration) error {
	_, err := m.run(ctx, fmt.Sprintf(`systemctl stop %[1]s.timer %[1]s.service 2>/dev/null
systemctl reset-failed %[1]s.timer %[1]s.service 2>/dev/null
systemd-run --quiet --unit=%[1]s --description="backbone: roll back to generation %[2]d unless deploy confirm arrives" --on-active=%[3]d /bin/sh %[4]s/generations/%[5]d/apply.sh rollback %[2]d`,
		rollbackUnit, to, int(d.Seconds()+0.5), Root, program))
	return err
}

// confirm disarms an armed rollback; it reports whether one was armed.
func (m *remote) confirm(ctx context.Context) (bool, error) {
	out, err := m.run(ctx, fmt.Sprintf(`armed=no
systemctl -q is-active %[1]s.timer 2>/dev/null && armed=yes
systemctl stop %[1]s.timer 2>/dev/null
systemctl reset-failed %[1]s.timer %[1]s.service 2>/dev/null
echo $armed`, rollbackUnit))
	return strings.TrimSpace(out) == "yes", err
}

// origin is the generation n replaced and the deploy run that made it.
func (m *remote) origin(ctx context.Context, n int) (parent int, run string, err error) {
	out, err := m.run(ctx, fmt.Sprintf("cat %[1]s/generations/%[2]d/parent; cat %[1]s/generations/%[2]d/run 2>/dev/null || echo", Root, n))
	if err != nil {
		return 0, "", err
	}
	f := strings.Split(strings.TrimSpace(out)+"\n", "\n")
	parent, err = strconv.Atoi(strings.TrimSpace(f[0]))
	return parent, strings.TrimSpace(f[1]), err
}

// prune keeps the last keep generations besides 0 and the current one,
// and the logs of the last 50 switches.
func (m *remote) prune(ctx context.Context, keep int) error {
	if _, err := m.run(ctx, fmt.Sprintf(`ls -t %s/log/*.log 2>/dev/null | tail -n +51 | xargs -r rm -f`, Root)); err != nil {
		return err
	}
	var old []string
	for i, g := range m.generations {
		if g != 0 && g != m.current && i < len(m.generations)-keep {
			old = append(old, fmt.Sprintf("%s/generations/%d", Root, g))
		}
	}
	if len(old) == 0 {
		return nil
	}
	_, err := m.run(ctx, `rm -rf "$@"`, old...)
	return err
}

package sshnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/backbone-net/backbone/internal/lab/namespace"
	"github.com/backbone-net/backbone/internal/lab/netconf"
	"github.com/backbone-net/backbone/internal/node"
)

// These tests run a real OpenSSH sshd on 127.0.0.1 (and one inside a
// network namespace): what matters is how OpenSSH answers, not how a fake
// would.

const sshdPath = "/usr/sbin/sshd"

func requireSSHD(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sshd runs as root to log users in")
	}
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("needs OpenSSH's server (%s): %v", sshdPath, err)
	}
}

// keygen makes a key pair with ssh-keygen and returns its public key.
func keygen(t *testing.T, path, typ, passphrase string) ssh.PublicKey {
	t.Helper()
	args := []string{"-q", "-t", typ, "-N", passphrase, "-C", "bbssh-test-" + filepath.Base(path), "-f", path}
	if typ == "rsa" {
		args = append(args, "-b", "2048")
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	return readPub(t, path+".pub")
}

func readPub(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}

// lockedBuffer collects sshd's log from its output goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type sshdOptions struct {
	hostKeyTypes []string // ssh-keygen -t values; default ed25519
	maxSessions  int      // 0: sshd's default (10)
	netns        string   // run sshd inside this namespace
	profile      string   // shell code the login shell runs first
}

// testSSHD is a running sshd and what a client needs to log in to it.
type testSSHD struct {
	dir        string
	port       int
	netns      string
	pid        int
	hostKeys   map[string]ssh.PublicKey // by ssh-keygen -t
	clientKey  string                   // private key file, authorized for root
	knownHosts string                   // lists every host key
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tcpServer listens on a loopback port until the test ends, handing
// each connection to handle; it returns the port.
func tcpServer(t *testing.T, handle func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func startSSHD(t *testing.T, o sshdOptions) *testSSHD {
	t.Helper()
	requireSSHD(t)
	if len(o.hostKeyTypes) == 0 {
		o.hostKeyTypes = []string{"ed25519"}
	}
	// sshd's privilege separation chroots into /run/sshd.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &testSSHD{dir: t.TempDir(), port: freePort(t), netns: o.netns, hostKeys: map[string]ssh.PublicKey{}}
	cfg := []string{
		"Port " + strconv.Itoa(s.port),
		"ListenAddress 127.0.0.1",
		// %u: only root has a key; other users are refused like on a router.
		"AuthorizedKeysFile " + filepath.Join(s.dir, "authorized_keys.%u"),
		"PidFile " + filepath.Join(s.dir, "sshd.pid"),
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"PermitRootLogin prohibit-password",
		// No AcceptEnv: like most servers, it accepts no variable.
		//
		// bash reads ~/.bashrc for commands run by sshd unless it is a
		// nested shell: this machine's root profile (slow, and with lock
		// files a killed shell leaves behind) stays out of the tests.
		// TestCancel brings a profile of its own.
	}
	setEnv := "SetEnv SHLVL=1"
	if o.profile != "" {
		// A login profile of our own, read by bash as BASH_ENV.
		path := filepath.Join(s.dir, "profile")
		writeFile(t, path, o.profile)
		setEnv += " BASH_ENV=" + path
	}
	cfg = append(cfg, setEnv)
	var known []string
	for _, typ := range o.hostKeyTypes {
		path := filepath.Join(s.dir, "ssh_host_"+typ+"_key")
		s.hostKeys[typ] = keygen(t, path, typ, "")
		cfg = append(cfg, "HostKey "+path)
		known = append(known, knownhosts.Line([]string{s.hostPort()}, s.hostKeys[typ]))
	}
	if o.maxSessions > 0 {
		cfg = append(cfg, "MaxSessions "+strconv.Itoa(o.maxSessions))
	}
	s.clientKey = filepath.Join(s.dir, "id_ed25519")
	keygen(t, s.clientKey, "ed25519", "")
	copyFile(t, s.clientKey+".pub", filepath.Join(s.dir, "authorized_keys.root"))
	s.knownHosts = filepath.Join(s.dir, "known_hosts")
	writeFile(t, s.knownHosts, strings.Join(known, "\n")+"\n")
	cfgPath := filepath.Join(s.dir, "sshd_config")
	writeFile(t, cfgPath, strings.Join(cfg, "\n")+"\n")

	argv := []string{sshdPath, "-D", "-e", "-f", cfgPath}
	if o.netns != "" {
		argv = append([]string{"ip", "netns", "exec", o.netns}, argv...)
	}
	log := &lockedBuffer{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	// Do not wait for the log pipe forever should a process still hold it.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// The clients are closed by now (cleanups run last first), so the
		// per-connection sshd processes end by themselves; those that do
		// not (stopped by TestKeepalive) are killed. Commands are left to
		// end on their own: a login shell killed while it runs root's
		// profile may leave the profile's lock files behind.
		kids := sshdProcesses(descendants(s.pid))
		_ = cmd.Process.Kill()
		deadline := time.Now().Add(time.Second)
		for _, k := range kids {
			for namespace.Alive(k) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
		// The per-connection processes share sshd's log pipe.
		<-exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", log)
		}
	})

	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("sshd exited at start:\n%s", log)
		default:
		}
		var conn net.Conn
		err := namespace.Do(o.netns, func() error {
			var err error
			conn, err = net.DialTimeout("tcp", s.hostPort(), 200*time.Millisecond)
			return err
		})
		if err == nil {
			conn.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen on %s: %v\n%s", s.hostPort(), err, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *testSSHD) hostPort() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// target is how the tests reach s as router pe101, as root.
func (s *testSSHD) target() Target {
	return Target{
		Name:       "pe101",
		Address:    "127.0.0.1",
		Port:       s.port,
		KeyFile:    s.clientKey,
		KnownHosts: s.knownHosts,
		Netns:      s.netns,
		Timeout:    5 * time.Second,
	}
}

func dialT(t *testing.T, tg Target) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, tg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialErr dials tg, which must fail, and returns the error.
func dialErr(t *testing.T, tg Target) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, tg)
	if err == nil {
		c.Close()
		t.Fatalf("Dial succeeded, want an error")
	}
	return err
}

func wantContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q\ndoes not contain %q", err, p)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data))
}

// descendants lists the processes below pid.
func descendants(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			parent[p], _ = strconv.Atoi(f[1])
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// sshdProcesses keeps the pids that are sshd itself (not the commands).
func sshdProcesses(pids []int) []int {
	var out []int
	for _, p := range pids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/comm"); err == nil && strings.TrimSpace(string(b)) == "sshd" {
			out = append(out, p)
		}
	}
	return out
}

func run(t *testing.T, c *Client, cmd node.Cmd) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Run(ctx, cmd)
	return o.String(), e.String(), err
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		cmd     node.Cmd
		want    string
		wantErr string
	}{
		{cmd: node.Cmd{Argv: []string{"ip", "-j", "link"}}, want: "ip -j link"},
		{cmd: node.Cmd{Argv: []string{"echo", "a b", "it's"}}, want: `echo 'a b' 'it'\''s'`},
		{cmd: node.Cmd{Argv: []string{"vtysh", "-c", "show bgp"}, Env: []string{"A=1", "B=x y"}}, want: `env A=1 'B=x y' vtysh -c 'show bgp'`},
		{cmd: node.Cmd{}, wantErr: "no command to run"},
		{cmd: node.Cmd{Argv: []string{"A=b", "c"}}, wantErr: `command name "A=b" contains '=': give the program's path instead`},
		{cmd: node.Cmd{Argv: []string{"true"}, Env: []string{"NOVALUE"}}, wantErr: `environment entry "NOVALUE" is not NAME=VALUE`},
		{cmd: node.Cmd{Argv: []string{"true"}, Env: []string{"-i=1"}}, wantErr: `environment entry "-i=1" is not NAME=VALUE`},
	} {
		got, err := commandLine(tc.cmd)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("commandLine(%q): error %v, want %q", tc.cmd.Argv, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("commandLine(%q, env %q) = %q, %v; want %q", tc.cmd.Argv, tc.cmd.Env, got, err, tc.want)
		}
	}
}

func TestOutputsReport(t *testing.T) {
	// The process group report, split across writes and after some
	// noise of the login shell, is taken out of standard error.
	var stdout, stderr bytes.Buffer
	o := newOutputs(&stdout, &stderr)
	w, e := o.writer(false), o.writer(true)
	for _, chunk := range []string{"motd noise\n", "backbone-sshnode-pg", "id=4242\nerr 1\n", "err 2\n"} {
		e.Write([]byte(chunk))
	}
	w.Write([]byte("out\n"))
	o.finish()
	e.Write([]byte("after Run returned\n"))
	if got := o.processGroup(); got != 4242 {
		t.Errorf("process group %d, want 4242", got)
	}
	if stderr.String() != "motd noise\nerr 1\nerr 2\n" || stdout.String() != "out\n" {
		t.Errorf("stderr %q, stdout %q", stderr.String(), stdout.String())
	}
	if got := o.stderrTail(); got != "motd noise\nerr 1\nerr 2" {
		t.Errorf("stderr tail %q", got)
	}

	// No report (the shell failed first): everything is passed on.
	stderr.Reset()
	o = newOutputs(nil, &stderr)
	o.writer(true).Write([]byte("sh: cannot start\npartial"))
	o.finish()
	if stderr.String() != "sh: cannot start\npartial" || o.processGroup() != 0 {
		t.Errorf("stderr %q, process group %d", stderr.String(), o.processGroup())
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	s := startSSHD(t, sshdOptions{})
	c := dialT(t, s.target())
	if c.Name() != "pe101" {
		t.Errorf("Name() = %q", c.Name())
	}

	t.Run("exit", func(t *testing.T) {
		longErr := `i=0; while [ $i -lt 300 ]; do echo "line $i" >&2; i=$((i+1)); done; printf '\n\n' >&2; exit 1`
		for _, tc := range []struct {
			name       string
			argv       []string
			wantCode   int // 0: success
			wantStdout string
			wantStderr string // in ExitError.Stderr
		}{
			{"ok", []string{"sh", "-c", "echo out; echo err >&2"}, 0, "out\n", ""},
			{"code", []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, 3, "out\n", "err"},
			{"term", []string{"sh", "-c", "kill -TERM $$"}, 143, "", ""},
			{"kill", []string{"sh", "-c", "kill -KILL $$"}, 137, "", ""},
			{"missing", []string{"bbssh-no-such-command"}, 127, "", "bbssh-no-such-command: command not found"},
			{"long stderr", []string{"sh", "-c", longErr}, 1, "", "line 299"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				stdout, stderr, err := run(t, c, node.Cmd{Argv: tc.argv})
				if stdout != tc.wantStdout {
					t.Errorf("stdout %q, want %q", stdout, tc.wantStdout)
				}
				if tc.wantCode == 0 {
					if err != nil {
						t.Fatalf("Run: %v", err)
					}
					if stderr != "err\n" {
						t.Errorf("stderr %q", stderr)
					}
					return
				}
				var ee *node.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("Run: %v (%T), want *node.ExitError", err, err)
				}
				if ee.Code != tc.wantCode || ee.Node != "pe101" || node.Quote(ee.Argv) != node.Quote(tc.argv) {
					t.Errorf("ExitError %+v, want code %d on pe101", ee, tc.wantCode)
				}
				if !strings.Contains(ee.Stderr, tc.wantStderr) {
					t.Errorf("ExitError.Stderr %q does not contain %q", ee.Stderr, tc.wantStderr)
				}
				if len(ee.Stderr) > stderrLimit+3 {
					t.Errorf("ExitError.Stderr has %d bytes, more than the %d allowed", len(ee.Stderr), stderrLimit+3)
				}
				if tc.name == "long stderr" && (!strings.HasPrefix(ee.Stderr, "...") || !strings.HasSuffix(ee.Stderr, "line 299")) {
					t.Errorf("long stderr not cut to its end: %q", ee.Stderr)
				}
			})
		}
	})

	t.Run("stdin", func(t *testing.T) {
		in := make([]byte, 4<<20)
		if _, err := rand.Read(in); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := c.Run(context.Background(), node.Cmd{Argv: []string{"cat"}, Stdin: bytes.NewReader(in), Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(out.Bytes()) != sha256.Sum256(in) {
			t.Errorf("cat returned %d bytes differing from the %d sent", out.Len(), len(in))
		}
	})

	t.Run("stdin not read", func(t *testing.T) {
		// Input that never ends must not keep Run from returning once
		// the command exited.
		pr, pw := io.Pipe()
		defer pw.Close()
		start := time.Now()
		if _, _, err := run(t, c, node.Cmd{Argv: []string{"true"}, Stdin: pr}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Run took %s", d)
		}
	})

	t.Run("env", func(t *testing.T) {
		out, _, err := run(t, c, node.Cmd{Argv: []string{"sh", "-c", `echo "$FOO|$BAR"`}, Env: []string{"FOO=a 'b' \"c\" $HOME", "BAR=2"}})
		if err != nil {
			t.Fatal(err)
		}
		if want := "a 'b' \"c\" $HOME|2\n"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
	})

	t.Run("quoting", func(t *testing.T) {
		args := []string{"a b", "it's", `"dq"`, "$HOME", "`id`", `back\slash`, "", "new\nline", "*", "; exit 7", "--"}
		out, _, err := run(t, c, node.Cmd{Argv: append([]string{"printf", `[%s]\n`}, args...)})
		if err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for _, a := range args {
			fmt.Fprintf(&want, "[%s]\n", a)
		}
		if out != want.String() {
			t.Errorf("got %q\nwant %q", out, want.String())
		}
	})

	t.Run("combined output", func(t *testing.T) {
		// One writer for both streams (run with -race).
		out, err := node.CombinedOutput(context.Background(), c, "sh", "-c", "for i in 1 2 3 4 5; do echo o$i; echo e$i >&2; done")
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(out), "\n"); n != 10 {
			t.Errorf("got %d lines: %q", n, out)
		}
	})

	t.Run("closed", func(t *testing.T) {
		c2 := dialT(t, s.target())
		if err := c2.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := c2.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		_, _, err := run(t, c2, node.Cmd{Argv: []string{"true"}})
		if err == nil || err.Error() != "pe101: cannot run true: the SSH connection was closed" {
			t.Errorf("Run on closed client: %v", err)
		}
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	// The router's login shell starts slowly and chats, as a shell with a
	// busy profile does. It also ignores SIGPIPE, so that a shell whose
	// session was closed under it still goes on to run the command: only
	// killing its process group stops it.
	s := startSSHD(t, sshdOptions{profile: "trap '' PIPE; echo profile noise >&2; sleep 0.3\n"})
	c := dialT(t, s.target())

	_, stderr, err := run(t, c, node.Cmd{Argv: []string{"sh", "-c", "echo err >&2"}})
	if err != nil || stderr != "profile noise\nerr\n" {
		t.Errorf("stderr %q, %v; want the profile's and the command's, without the process group report", stderr, err)
	}

	// Cancelled while the session opens, while the shell starts (before
	// it reported its process group), and while the command runs.
	for _, after := range []time.Duration{time.Millisecond, 100 * time.Millisecond, 600 * time.Millisecond} {
		t.Run(after.String(), func(t *testing.T) {
			// A unique duration finds the remote process among others.
			arg := fmt.Sprintf("29.%d", time.Now().UnixNano()%1000000)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(after, cancel)
			start := time.Now()
			err := c.Run(ctx, node.Cmd{Argv: []string{"sleep", arg}})
			if d := time.Since(start); d > after+3*time.Second {
				t.Errorf("Run returned %s after the cancel", d-after)
			}
			if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "pe101: sleep "+arg) {
				t.Errorf("Run: %v, want pe101's context.Canceled", err)
			}
			deadline := time.Now().Add(2 * time.Second)
			for exec.Command("pgrep", "-f", "sleep "+arg).Run() == nil {
				if time.Now().After(deadline) {
					t.Fatalf("remote `sleep %s` still runs 2s after the cancel", arg)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Nor does it start later (a shell still starting when the
			// cancel came).
			time.Sleep(500 * time.Millisecond)
			if exec.Command("pgrep", "-f", "sleep "+arg).Run() == nil {
				t.Fatalf("remote `sleep %s` started after the cancel", arg)
			}
		})
	}
	// The connection is still good.
	if _, _, err := run(t, c, node.Cmd{Argv: []string{"true"}}); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	// sshd's default MaxSessions (10) and a lower one than ours, where
	// Run must wait for a session to end.
	for _, max := range []int{0, 3} {
		t.Run(fmt.Sprintf("MaxSessions=%d", max), func(t *testing.T) {
			t.Parallel()
			s := startSSHD(t, sshdOptions{maxSessions: max})
			c := dialT(t, s.target())
			const n = 20
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var out bytes.Buffer
					err := c.Run(context.Background(), node.Cmd{Argv: []string{"sh", "-c", "sleep 0.1; echo $0", strconv.Itoa(i)}, Stdout: &out})
					if err == nil && out.String() != strconv.Itoa(i)+"\n" {
						err = fmt.Errorf("output %q", out.String())
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("run %d: %v", i, err)
				}
			}
		})
	}
}

func TestKeepalive(t *testing.T) {
	t.Parallel()
	s := startSSHD(t, sshdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx, s.target(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A few keepalives on a healthy connection change nothing.
	time.Sleep(500 * time.Millisecond)
	if _, _, err := run(t, c, node.Cmd{Argv: []string{"true"}}); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The router hangs (its sshd processes stop) during a command: the
	// keepalive notices and Run reports the lost connection.
	arg := fmt.Sprintf("20.%d", time.Now().UnixNano()%1000000)
	res := make(chan error, 1)
	go func() { res <- c.Run(context.Background(), node.Cmd{Argv: []string{"sleep", arg}}) }()
	var sleeper int
	for deadline := time.Now().Add(5 * time.Second); sleeper == 0; time.Sleep(10 * time.Millisecond) {
		if out, err := exec.Command("pgrep", "-f", "^sleep "+arg+"$").Output(); err == nil {
			sleeper, _ = strconv.Atoi(strings.Fields(string(out))[0])
		}
		if time.Now().After(deadline) {
			t.Fatal("the remote sleep does not start")
		}
	}
	defer syscall.Kill(sleeper, syscall.SIGKILL)
	for _, pid := range sshdProcesses(descendants(s.pid)) {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	select {
	case err := <-res:
		if err == nil || err.Error() != "pe101: the connection to the router was lost while running sleep "+arg+": no answer to a keepalive within 200ms" {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run still waits 3s after the router hung")
	}
	_, _, err = run(t, c, node.Cmd{Argv: []string{"true"}})
	if err == nil || err.Error() != "pe101: cannot run true: the connection to the router was lost: no answer to a keepalive within 200ms" {
		t.Errorf("Run after the loss: %v", err)
	}
}

func TestHostKeys(t *testing.T) {
	t.Parallel()
	s := startSSHD(t, sshdOptions{})
	key := s.hostKeys["ed25519"]
	where := "127.0.0.1 port " + strconv.Itoa(s.port)

	t.Run("unknown", func(t *testing.T) {
		tg := s.target()
		tg.KnownHosts = filepath.Join(t.TempDir(), "missing", "known_hosts")
		err := dialErr(t, tg)
		var he *HostKeyError
		if !errors.As(err, &he) || !he.Unknown() {
			t.Fatalf("Dial: %v, want an unknown host key", err)
		}
		want := fmt.Sprintf("pe101: the host key of %s is unknown: it is ssh-ed25519 %s and %s has no key for [127.0.0.1]:%d: check the fingerprint (on pe101: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run again with --accept-new-host-keys",
			where, ssh.FingerprintSHA256(key), tg.KnownHosts, s.port)
		if err.Error() != want {
			t.Errorf("got  %s\nwant %s", err, want)
		}
		if _, err := os.Stat(tg.KnownHosts); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("known_hosts written without AcceptNewHostKey: %v", err)
		}
	})

	t.Run("accept new", func(t *testing.T) {
		tg := s.target()
		tg.KnownHosts = filepath.Join(t.TempDir(), "new", "known_hosts")
		tg.AcceptNewHostKey = true
		c := dialT(t, tg)
		if _, _, err := run(t, c, node.Cmd{Argv: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(tg.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("known_hosts mode %v, want 0600", st.Mode().Perm())
		}
		data, _ := os.ReadFile(tg.KnownHosts)
		if want := knownhosts.Line([]string{s.hostPort()}, key) + "\n"; string(data) != want {
			t.Errorf("known_hosts:\n%s\nwant\n%s", data, want)
		}
		// OpenSSH itself finds the entry.
		if out, err := exec.Command("ssh-keygen", "-F", fmt.Sprintf("[127.0.0.1]:%d", s.port), "-f", tg.KnownHosts).CombinedOutput(); err != nil {
			t.Errorf("ssh-keygen -F does not find the written key: %v\n%s", err, out)
		}
		tg.AcceptNewHostKey = false
		dialT(t, tg)
		if again, _ := os.ReadFile(tg.KnownHosts); !bytes.Equal(again, data) {
			t.Errorf("known_hosts changed by a dial of a known host:\n%s", again)
		}
	})

	t.Run("accept new, no final newline", func(t *testing.T) {
		tg := s.target()
		tg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
		other := knownhosts.Line([]string{"192.0.2.1"}, key)
		writeFile(t, tg.KnownHosts, other)
		tg.AcceptNewHostKey = true
		dialT(t, tg)
		data, _ := os.ReadFile(tg.KnownHosts)
		if want := other + "\n" + knownhosts.Line([]string{s.hostPort()}, key) + "\n"; string(data) != want {
			t.Errorf("known_hosts:\n%s\nwant\n%s", data, want)
		}
	})

	t.Run("changed", func(t *testing.T) {
		dir := t.TempDir()
		old := keygen(t, filepath.Join(dir, "old"), "ed25519", "")
		tg := s.target()
		tg.KnownHosts = filepath.Join(dir, "known_hosts")
		content := knownhosts.Line([]string{"192.0.2.1"}, key) + "\n" + knownhosts.Line([]string{s.hostPort()}, old) + "\n"
		writeFile(t, tg.KnownHosts, content)
		tg.AcceptNewHostKey = true // never for a changed key
		err := dialErr(t, tg)
		var he *HostKeyError
		if !errors.As(err, &he) || he.Unknown() {
			t.Fatalf("Dial: %v, want a changed host key", err)
		}
		want := fmt.Sprintf("pe101: the host key of %s has changed: it is now ssh-ed25519 %s, but %s:2 has ssh-ed25519 %s: someone may be intercepting the connection (man-in-the-middle), so it is refused; "+
			"if pe101 was reinstalled and its new fingerprint checks out (on pe101: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), remove line 2 of %s (ssh-keygen -R '[127.0.0.1]:%d' -f %s), then run again with --accept-new-host-keys",
			where, ssh.FingerprintSHA256(key), tg.KnownHosts, ssh.FingerprintSHA256(old), tg.KnownHosts, s.port, tg.KnownHosts)
		if err.Error() != want {
			t.Errorf("got  %s\nwant %s", err, want)
		}
		if data, _ := os.ReadFile(tg.KnownHosts); string(data) != content {
			t.Errorf("known_hosts changed:\n%s", data)
		}
	})

	t.Run("type no longer offered", func(t *testing.T) {
		// On file: an ECDSA key; the router has only an Ed25519 one now.
		dir := t.TempDir()
		old := keygen(t, filepath.Join(dir, "old"), "ecdsa", "")
		tg := s.target()
		tg.KnownHosts = filepath.Join(dir, "known_hosts")
		writeFile(t, tg.KnownHosts, knownhosts.Line([]string{s.hostPort()}, old)+"\n")
		tg.AcceptNewHostKey = true
		err := dialErr(t, tg)
		var he *HostKeyError
		if !errors.As(err, &he) || he.Unknown() || he.Key != nil {
			t.Fatalf("Dial: %v, want a changed host key", err)
		}
		wantContains(t, err, "pe101: the host key of "+where+" has changed: it no longer offers that key type (it offers ssh-ed25519)",
			tg.KnownHosts+":1 has ecdsa-sha2-nistp256 "+ssh.FingerprintSHA256(old), "man-in-the-middle", "remove line 1 of "+tg.KnownHosts)
	})

	t.Run("bad known_hosts", func(t *testing.T) {
		tg := s.target()
		tg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
		writeFile(t, tg.KnownHosts, "# comment\n127.0.0.1 ssh-ed25519 not-base64!\n")
		err := dialErr(t, tg)
		wantContains(t, err, "pe101: cannot use known_hosts file "+tg.KnownHosts+": ", tg.KnownHosts+":2", "fix or remove that line")
	})
}

func TestHostKeyAlgorithms(t *testing.T) {
	t.Parallel()
	// The router has three host keys; known_hosts has some of them. Go's
	// client prefers ECDSA: without narrowing its algorithms to the types
	// on file, an Ed25519 or RSA key on file would look changed.
	s := startSSHD(t, sshdOptions{hostKeyTypes: []string{"ed25519", "ecdsa", "rsa"}})
	for _, known := range [][]string{{"ed25519"}, {"rsa"}, {"ecdsa"}, {"rsa", "ed25519"}} {
		t.Run(strings.Join(known, "+"), func(t *testing.T) {
			tg := s.target()
			tg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
			var lines []string
			for _, typ := range known {
				lines = append(lines, knownhosts.Line([]string{s.hostPort()}, s.hostKeys[typ]))
			}
			writeFile(t, tg.KnownHosts, strings.Join(lines, "\n")+"\n")
			c := dialT(t, tg)
			if _, _, err := run(t, c, node.Cmd{Argv: []string{"true"}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	// Not parallel: subtests set HOME and SSH_AUTH_SOCK.
	s := startSSHD(t, sshdOptions{})
	dir := t.TempDir()
	clientPub := readPub(t, s.clientKey+".pub")
	tried := fmt.Sprintf("keys tried: ssh-ed25519 %s (%s)", ssh.FingerprintSHA256(clientPub), s.clientKey)
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("HOME", filepath.Join(dir, "emptyhome"))

	for _, user := range []string{"nobody", "bbssh-no-such-user"} {
		t.Run("user "+user, func(t *testing.T) {
			tg := s.target()
			tg.User = user
			err := dialErr(t, tg)
			want := fmt.Sprintf("pe101: user %s was refused by 127.0.0.1 (%s): add the public key to ~%s/.ssh/authorized_keys on pe101, or set user or key in the inventory", user, tried, user)
			if err.Error() != want {
				t.Errorf("got  %s\nwant %s", err, want)
			}
		})
	}

	other := filepath.Join(dir, "other")
	keygen(t, other, "ed25519", "")
	encrypted := filepath.Join(dir, "encrypted")
	keygen(t, encrypted, "ed25519", "secret")
	for _, tc := range []struct {
		name, keyFile string
		want          []string
	}{
		{"key not authorized", other, []string{"pe101: user root was refused by 127.0.0.1 (keys tried: ssh-ed25519 ", "(" + other + ")): add the public key to ~root/.ssh/authorized_keys on pe101"}},
		{"key missing", filepath.Join(dir, "nope"), []string{"pe101: cannot read SSH key file " + filepath.Join(dir, "nope") + ": no such file or directory: check key in the inventory"}},
		{"public key given", other + ".pub", []string{"pe101: SSH key file " + other + ".pub is not a usable private key (ssh: no key found): point key in the inventory at a private key, not its .pub"}},
		{"passphrase", encrypted, []string{"pe101: SSH key file " + encrypted + " is protected by a passphrase, which backbone does not ask for: load it into ssh-agent (eval $(ssh-agent); ssh-add " + encrypted + ") and run again from that shell"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := s.target()
			tg.KeyFile = tc.keyFile
			wantContains(t, dialErr(t, tg), tc.want...)
		})
	}

	t.Run("no key at all", func(t *testing.T) {
		tg := s.target()
		tg.KeyFile = ""
		err := dialErr(t, tg)
		want := "pe101: no SSH key to log in with: SSH_AUTH_SOCK is not set; there is no " + filepath.Join(dir, "emptyhome") + "/.ssh/id_ed25519, id_ecdsa, id_rsa: set key in the inventory, or load a key into ssh-agent"
		if err.Error() != want {
			t.Errorf("got  %s\nwant %s", err, want)
		}
	})

	t.Run("default key file", func(t *testing.T) {
		home := filepath.Join(dir, "home")
		if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
			t.Fatal(err)
		}
		copyFile(t, encrypted, filepath.Join(home, ".ssh", "id_rsa")) // skipped: needs a passphrase
		copyFile(t, s.clientKey, filepath.Join(home, ".ssh", "id_ecdsa"))
		t.Setenv("HOME", home)
		tg := s.target()
		tg.KeyFile = ""
		dialT(t, tg)
	})

	t.Run("agent", func(t *testing.T) {
		sock := filepath.Join(dir, "agent.sock")
		agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
		if err := agentCmd.Start(); err != nil {
			t.Skipf("no ssh-agent: %v", err)
		}
		t.Cleanup(func() { _ = agentCmd.Process.Kill(); _ = agentCmd.Wait() })
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("ssh-agent did not create its socket")
			}
		}
		// The key authorized on the server, behind a passphrase, is
		// loaded into the agent as a user would, with the passphrase
		// from an askpass program.
		locked := filepath.Join(dir, "locked")
		copyFile(t, s.clientKey, locked)
		if out, err := exec.Command("ssh-keygen", "-p", "-q", "-P", "", "-N", "secret", "-f", locked).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -p: %v\n%s", err, out)
		}
		askpass := filepath.Join(dir, "askpass")
		if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho secret\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		add := exec.Command("ssh-add", locked)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock, "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none")
		add.Stdin = nil
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v\n%s", err, out)
		}
		t.Setenv("SSH_AUTH_SOCK", sock)
		t.Setenv("HOME", filepath.Join(dir, "emptyhome"))

		// The passphrase-protected key file, unlocked by the agent.
		tg := s.target()
		tg.KeyFile = locked
		dialT(t, tg)
		// No key file: the agent's keys.
		tg.KeyFile = ""
		dialT(t, tg)
	})
}

func TestReach(t *testing.T) {
	t.Parallel()
	requireSSHD(t)
	port := freePort(t)
	tg := Target{Name: "pe101", Address: "127.0.0.1", Port: port, KeyFile: filepath.Join(t.TempDir(), "id"), KnownHosts: filepath.Join(t.TempDir(), "known_hosts"), Timeout: 2 * time.Second}
	keygen(t, tg.KeyFile, "ed25519", "")

	t.Run("refused", func(t *testing.T) {
		err := dialErr(t, tg)
		want := fmt.Sprintf("pe101: cannot reach 127.0.0.1 port %d: connect: connection refused: check the address and port in the inventory and that sshd runs there", port)
		if err.Error() != want {
			t.Errorf("got  %s\nwant %s", err, want)
		}
	})

	t.Run("silent", func(t *testing.T) {
		// Something accepts the connection and says nothing.
		var mu sync.Mutex
		var silent []net.Conn
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range silent {
				c.Close()
			}
		})
		tg := tg
		tg.Port = tcpServer(t, func(c net.Conn) {
			mu.Lock()
			defer mu.Unlock()
			silent = append(silent, c)
		})
		tg.Timeout = 300 * time.Millisecond
		start := time.Now()
		err := dialErr(t, tg)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Dial took %s with a 300ms timeout", d)
		}
		want := fmt.Sprintf("pe101: cannot reach 127.0.0.1 port %d: no answer within 300ms: check the address and port in the inventory and that sshd runs there", tg.Port)
		if err.Error() != want {
			t.Errorf("got  %s\nwant %s", err, want)
		}
	})

	t.Run("not ssh", func(t *testing.T) {
		tg := tg
		tg.Port = tcpServer(t, func(c net.Conn) {
			_, _ = c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		})
		wantContains(t, dialErr(t, tg), fmt.Sprintf("pe101: SSH handshake with 127.0.0.1 port %d failed: ", tg.Port), "check that sshd (and not another service) runs there")
	})

	t.Run("no such netns", func(t *testing.T) {
		tg := tg
		tg.Netns = "bbssh-test-does-not-exist"
		wantContains(t, dialErr(t, tg), fmt.Sprintf(`pe101: cannot dial 127.0.0.1 port %d from network namespace "bbssh-test-does-not-exist": `, port), "check netns in the inventory (ip netns list)")
	})

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Dial(ctx, tg)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Dial with a cancelled context: %v", err)
		}
	})

	t.Run("no address", func(t *testing.T) {
		_, err := Dial(context.Background(), Target{Name: "pe101"})
		if err == nil || err.Error() != "pe101: no address to reach it over SSH: set address in the inventory" {
			t.Errorf("Dial: %v", err)
		}
	})
}

func TestNetns(t *testing.T) {
	t.Parallel()
	requireSSHD(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := fmt.Sprintf("bbssh-test-%x", b)
	if err := namespace.Create(ns); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := namespace.Delete(ns); err != nil {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	if err := namespace.Do(ns, func() error { return netconf.SetUp([]string{"lo"}) }); err != nil {
		t.Fatal(err)
	}
	s := startSSHD(t, sshdOptions{netns: ns})

	plain := s.target()
	plain.Netns = ""
	wantContains(t, dialErr(t, plain), fmt.Sprintf("pe101: cannot reach 127.0.0.1 port %d: connect: connection refused", s.port))

	c := dialT(t, s.target())
	out, _, err := run(t, c, node.Cmd{Argv: []string{"ls", "/sys/class/net"}})
	if err != nil {
		t.Fatal(err)
	}
	if out != "lo\n" {
		t.Errorf("the router's interfaces are %q, want only the namespace's lo", out)
	}
}

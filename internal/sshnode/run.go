package sshnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/backbone-net/backbone/internal/node"
)

// Run implements node.Runner: the command runs in a session of its own,
// through the login shell of the router's user (which must be a POSIX
// shell, as root's is). Cancelling ctx kills the command's process group
// and returns.
func (c *Client) Run(ctx context.Context, cmd node.Cmd) error {
	line, err := commandLine(cmd)
	if err != nil {
		return fmt.Errorf("%s: %w", c.t.Name, err)
	}
	what := node.Quote(cmd.Argv)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s: %w", c.t.Name, what, err)
	}
	sess, release, err := c.session(ctx, what)
	if err != nil {
		return err
	}
	defer release()

	out := newOutputs(cmd.Stdout, cmd.Stderr)
	sess.Stdout, sess.Stderr = out.writer(false), out.writer(true)
	var stdin io.WriteCloser
	if cmd.Stdin != nil {
		if stdin, err = sess.StdinPipe(); err != nil {
			sess.Close()
			return fmt.Errorf("%s: %s: %w", c.t.Name, what, err)
		}
	}
	if err := sess.Start(pgidReport + line); err != nil {
		sess.Close()
		return fmt.Errorf("%s: the router refused to run %s: %v", c.t.Name, what, err)
	}
	if stdin != nil {
		go func() {
			// Not waited for: the command may exit without reading all of
			// its input, and Stdin may block forever; the copy ends at the
			// next write once the session is closed.
			_, _ = io.Copy(stdin, cmd.Stdin)
			stdin.Close() // EOF for the command
		}()
	}

	waitc := make(chan error, 1)
	go func() { waitc <- sess.Wait() }()
	select {
	case err = <-waitc:
		sess.Close()
	case <-ctx.Done():
		go c.kill(sess, out)
		// Give the router a moment to end the session, but do not hang on
		// one that does not answer any more.
		select {
		case <-waitc:
		case <-c.done:
		case <-time.After(cancelGrace):
		}
		out.finish()
		return fmt.Errorf("%s: %s: %w", c.t.Name, what, ctx.Err())
	}
	out.finish()

	var ee *ssh.ExitError
	switch {
	case err == nil:
		if werr := out.writeErr(); werr != nil {
			return fmt.Errorf("%s: %s: writing its output: %w", c.t.Name, what, werr)
		}
		return nil
	case errors.As(err, &ee):
		code := ee.ExitStatus()
		if n, ok := signalNumbers[ee.Signal()]; ok {
			code = 128 + n
		}
		return &node.ExitError{Node: c.t.Name, Argv: cmd.Argv, Code: code, Stderr: out.stderrTail()}
	default:
		// No exit status: the session ended without the command's end
		// being reported, which is what a dropped connection looks like.
		if lost := c.lostReason(); lost != nil {
			err = lost
		}
		return fmt.Errorf("%s: the connection to the router was lost while running %s: %v", c.t.Name, what, err)
	}
}

// pgidMarker starts the line by which the remote shell reports its
// process group on standard error, before the command runs; outputs takes
// it out of the stream.
const pgidMarker = "backbone-sshnode-pgid="

// pgidReport prefixes every command line. sshd starts each command in a
// session (and process group) of its own, led by the shell: $$ is the
// process group to kill when the command is cancelled.
const pgidReport = "printf '" + pgidMarker + "%d\\n' $$ >&2; "

// kill ends a cancelled command. The SSH "signal" request is not enough:
// OpenSSH refuses it for root logins (it does not privilege-separate them),
// so the command's process group is also killed from a second session.
// The session is closed only then: closing it does not stop the command,
// and would lose the process group report still to come.
func (c *Client) kill(sess *ssh.Session, out *outputs) {
	defer sess.Close()
	_ = sess.Signal(ssh.SIGKILL)
	deadline := time.Now().Add(cancelGrace)
	select {
	case <-out.reported:
	case <-c.done:
		return
	case <-time.After(cancelGrace):
		return
	}
	pgid := out.processGroup()
	if pgid <= 1 {
		return // the session ended before the shell said
	}
	for {
		ks, err := c.conn.NewSession()
		if err == nil {
			_ = ks.Run(fmt.Sprintf("kill -s KILL -- -%d", pgid))
			ks.Close()
			return
		}
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || time.Now().After(deadline) {
			return
		}
		// The router's MaxSessions is reached (other commands being
		// cancelled at the same time): once they are killed, it frees up.
		time.Sleep(20 * time.Millisecond)
	}
}

// commandLine is what the remote shell runs for c.
func commandLine(c node.Cmd) (string, error) {
	if len(c.Argv) == 0 {
		return "", errors.New("no command to run")
	}
	if strings.Contains(c.Argv[0], "=") {
		// Both the shell and env would take it for a variable assignment.
		return "", fmt.Errorf("command name %q contains '=': give the program's path instead", c.Argv[0])
	}
	line := node.Quote(c.Argv)
	if len(c.Env) == 0 {
		return line, nil
	}
	// Servers refuse the SSH "env" request unless AcceptEnv lists the
	// variable: env(1) on the router sets them instead.
	pre := []string{"env"}
	for _, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.HasPrefix(k, "-") {
			return "", fmt.Errorf("environment entry %q is not NAME=VALUE", kv)
		}
		pre = append(pre, node.QuoteArg(kv))
	}
	return strings.Join(pre, " ") + " " + line, nil
}

// session opens a session, waiting for a free slot (see maxSessions) and,
// when the router allows fewer sessions than that, for one of ours to end.
func (c *Client) session(ctx context.Context, what string) (*ssh.Session, func(), error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%s: %s: %w", c.t.Name, what, ctx.Err())
	case <-c.done:
		return nil, nil, c.closedError(what)
	}
	release := func() { <-c.slots }
	backoff := 10 * time.Millisecond
	for {
		// Sessions being opened count as open: the server may have
		// granted them already.
		c.mu.Lock()
		c.open++
		c.mu.Unlock()
		s, err := c.newSession(ctx)
		if err == nil {
			return s, func() {
				c.mu.Lock()
				c.open--
				c.lastClose = time.Now()
				c.mu.Unlock()
				release()
			}, nil
		}
		var oce *ssh.OpenChannelError
		c.mu.Lock()
		c.open--
		// A session that just ended may still count on the server.
		busy := c.open > 0 || time.Since(c.lastClose) < time.Second
		c.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			release()
			return nil, nil, fmt.Errorf("%s: %s: %w", c.t.Name, what, ctx.Err())
		case errors.As(err, &oce) && busy:
			// Most likely the router's MaxSessions is below ours (OpenSSH
			// says only "open failed"): retry once a session ends.
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			case <-c.done:
			}
			backoff = min(2*backoff, 200*time.Millisecond)
			continue
		case errors.As(err, &oce):
			release()
			return nil, nil, fmt.Errorf("%s: the router refused a session to run %s: %v: check MaxSessions in its sshd_config and that user %s may run commands",
				c.t.Name, what, oce.Message, c.t.User)
		default:
			release()
			select {
			case <-c.done:
				return nil, nil, c.closedError(what)
			default:
			}
			return nil, nil, fmt.Errorf("%s: cannot open an SSH session to run %s: %v", c.t.Name, what, err)
		}
	}
}

// newSession is ssh.Client.NewSession, abandoned when ctx ends (a router
// that stopped answering would block it until the keepalive gives up).
func (c *Client) newSession(ctx context.Context) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := c.conn.NewSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// closedError is the error of a Run on a closed connection.
func (c *Client) closedError(what string) error {
	if lost := c.lostReason(); lost != nil {
		return fmt.Errorf("%s: cannot run %s: the connection to the router was lost: %v", c.t.Name, what, lost)
	}
	return fmt.Errorf("%s: cannot run %s: the SSH connection was closed", c.t.Name, what)
}

// signalNumbers are Linux's numbers of the signals an SSH server names in
// "exit-signal": a command killed by signal N exits 128+N, as in a shell.
var signalNumbers = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
	"KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
	"STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
	"URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
	"PWR": 30, "SYS": 31,
}

// stderrLimit bounds the standard error kept in an ExitError, as node's
// runners do.
const stderrLimit = 600

// outputs passes a session's output to the caller's writers, one write at
// a time (a caller may give the same writer for both, as
// node.CombinedOutput does), keeps the end of standard error, and takes
// the process group report (pgidReport) out of standard error.
type outputs struct {
	mu             sync.Mutex
	stdout, stderr io.Writer
	tail           []byte
	// scanning: the report is still to come; pending holds the start of
	// standard error until it does.
	scanning bool
	pending  []byte
	lines    int
	pgid     int
	// reported is closed once scanning is over, with or without a report.
	reported chan struct{}
	// err is the first write error of a caller's writer: output after it
	// is dropped rather than left unread, which would stall the command.
	err error
	// sealed: Run returned, the writers are the caller's again.
	sealed bool
}

func newOutputs(stdout, stderr io.Writer) *outputs {
	return &outputs{stdout: stdout, stderr: stderr, scanning: true, reported: make(chan struct{})}
}

type outputWriter struct {
	o      *outputs
	stderr bool
}

func (o *outputs) writer(stderr bool) io.Writer { return outputWriter{o, stderr} }

func (w outputWriter) Write(p []byte) (int, error) {
	o := w.o
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.sealed:
		// Run returned (cancelled): late output is dropped.
	case !w.stderr:
		o.emit(o.stdout, p)
	case o.scanning:
		o.pending = append(o.pending, p...)
		o.scan()
	default:
		o.emitStderr(p)
	}
	return len(p), nil
}

// scan looks for the report among the lines pending. Only what the login
// shell prints before it (profile noise) can come first: a few lines.
func (o *outputs) scan() {
	for o.scanning {
		i := bytes.IndexByte(o.pending, '\n')
		if i < 0 {
			if len(o.pending) > 4096 {
				o.stopScanning()
			}
			return
		}
		line := o.pending[:i]
		o.pending = o.pending[i+1:]
		if v, ok := bytes.CutPrefix(line, []byte(pgidMarker)); ok {
			o.pgid, _ = strconv.Atoi(string(v))
			o.stopScanning()
			return
		}
		o.emitStderr(append(line, '\n'))
		if o.lines++; o.lines >= 16 {
			o.stopScanning()
		}
	}
}

func (o *outputs) stopScanning() {
	o.scanning = false
	close(o.reported)
	rest := o.pending
	o.pending = nil
	if len(rest) > 0 {
		o.emitStderr(rest)
	}
}

func (o *outputs) emitStderr(p []byte) {
	// Keep more than the limit: trailing blank lines are trimmed off.
	const keep = 4 * stderrLimit
	o.tail = append(o.tail, p...)
	if len(o.tail) > 2*keep {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-keep:]...)
	}
	o.emit(o.stderr, p)
}

func (o *outputs) emit(w io.Writer, p []byte) {
	if w != nil && !o.sealed && o.err == nil {
		if _, err := w.Write(p); err != nil {
			o.err = err
		}
	}
}

// processGroup is the command's process group on the router (0: unknown).
func (o *outputs) processGroup() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pgid
}

// finish passes on what is pending and hands the writers back.
func (o *outputs) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.scanning {
		o.stopScanning()
	}
	o.sealed = true
}

func (o *outputs) writeErr() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// stderrTail is the end of standard error, trimmed as node.Output does.
func (o *outputs) stderrTail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.TrimSpace(string(o.tail))
	if len(s) > stderrLimit {
		s = "..." + strings.ToValidUTF8(s[len(s)-stderrLimit:], "")
	}
	return s
}

package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFrameRoundTripPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	frames := []struct {
		kind    byte
		payload []byte
	}{
		{FrameStdout, []byte("hello\n")},
		{FrameStderr, nil},
		{FrameStdout, bytes.Repeat([]byte{0xff}, 100000)},
		{FrameExit, []byte(`{"code":3}`)},
	}
	go func() {
		for _, f := range frames {
			if err := WriteFrame(a, f.kind, f.payload); err != nil {
				t.Errorf("WriteFrame: %v", err)
				return
			}
		}
		a.Close()
	}()
	for i, want := range frames {
		kind, payload, err := ReadFrame(b)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if kind != want.kind || !bytes.Equal(payload, want.payload) {
			t.Fatalf("frame %d: got kind %d len %d, want kind %d len %d", i, kind, len(payload), want.kind, len(want.payload))
		}
	}
	if _, _, err := ReadFrame(b); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: got %v, want EOF", err)
	}
}

func TestReadFrameRejectsGarbage(t *testing.T) {
	if _, _, err := ReadFrame(bytes.NewReader([]byte{9, 0, 0, 0, 1, 'x'})); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{1, 0xff, 0, 0, 0})); err == nil {
		t.Fatal("oversized frame accepted")
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{1, 0, 0, 0, 5, 'x'})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: got %v, want unexpected EOF", err)
	}
	if err := WriteFrame(io.Discard, FrameStdout, make([]byte, MaxFrame+1)); err == nil {
		t.Fatal("oversized write accepted")
	}
}

// pipeClient returns a client whose every connection is served in-process
// by srv over net.Pipe.
func pipeClient(t *testing.T, srv *Server, token string) *Client {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	return &Client{
		Addr:  "pipe",
		Token: token,
		Dial: func(ctx context.Context) (net.Conn, error) {
			a, b := net.Pipe()
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(context.Background(), b)
			}()
			return a, nil
		},
	}
}

func TestExecStreamsAndExitCode(t *testing.T) {
	c := pipeClient(t, &Server{Token: "s3cret"}, "s3cret")
	var out, errb bytes.Buffer
	code, err := c.Exec(context.Background(), ExecRequest{
		Argv: []string{"sh", "-c", "echo out; echo err >&2; cat; exit 7"},
		Env:  []string{"FOO=bar"},
		// Stdin goes through cat to stdout.
		Stdin: []byte("from-stdin\n"),
	}, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	if out.String() != "out\nfrom-stdin\n" || errb.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestExecEnvDirAndSignal(t *testing.T) {
	c := pipeClient(t, &Server{}, "")
	var out bytes.Buffer
	code, err := c.Exec(context.Background(), ExecRequest{
		Argv: []string{"sh", "-c", "echo $FOO $BACKBONE_VM; pwd; kill -TERM $$"},
		Env:  []string{"FOO=bar"},
		Dir:  "/tmp",
	}, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "bar 1\n/tmp\n" {
		t.Errorf("stdout %q", out.String())
	}
	if code != 128+15 {
		t.Errorf("exit code %d, want 143", code)
	}
}

func TestExecNotFound(t *testing.T) {
	c := pipeClient(t, &Server{}, "")
	code, err := c.Exec(context.Background(), ExecRequest{Argv: []string{"/nonexistent/cmd"}}, nil, nil)
	var ae *Error
	if !errors.As(err, &ae) || code != 127 {
		t.Fatalf("got code %d err %v, want 127 and an agent error", code, err)
	}
}

func TestBadToken(t *testing.T) {
	c := pipeClient(t, &Server{Token: "right"}, "wrong")
	_, err := c.Exec(context.Background(), ExecRequest{Argv: []string{"true"}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("got %v, want token error", err)
	}
	if _, err := c.WaitReady(context.Background(), time.Millisecond, nil); err == nil {
		t.Fatal("WaitReady retried a refusal instead of failing")
	}
}

func TestExecCancelKillsProcessGroup(t *testing.T) {
	c := pipeClient(t, &Server{}, "")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Exec(ctx, ExecRequest{Argv: []string{"sh", "-c", "echo started; sleep 30 & sleep 30; wait"}}, pw, nil)
		done <- err
	}()
	buf := make([]byte, 8)
	if _, err := io.ReadFull(pr, buf); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("cancel took too long")
	}
}

func TestPingAndPoweroff(t *testing.T) {
	powered := make(chan struct{})
	srv := &Server{
		Info:     func() Info { return Info{Kernel: "6.1.0-test", Hostname: "backbone-vm"} },
		Poweroff: func() { close(powered) },
	}
	c := pipeClient(t, srv, "")
	info, err := c.WaitReady(context.Background(), 0, nil)
	if err != nil || info.Kernel != "6.1.0-test" {
		t.Fatalf("ping: %+v %v", info, err)
	}
	if err := c.Poweroff(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-powered:
	case <-time.After(5 * time.Second):
		t.Fatal("poweroff callback not called")
	}
}

func TestWaitReadyRetriesUntilUp(t *testing.T) {
	attempts := 0
	srv := &Server{}
	c := &Client{Addr: "flaky", Dial: func(ctx context.Context) (net.Conn, error) {
		attempts++
		a, b := net.Pipe()
		if attempts < 3 {
			b.Close() // what a hostfwd to a booting guest looks like: EOF
			return a, nil
		}
		go srv.ServeConn(context.Background(), b)
		return a, nil
	}}
	if _, err := c.WaitReady(context.Background(), time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if attempts != 3 {
		t.Fatalf("attempts %d, want 3", attempts)
	}
	dead := errors.New("qemu exited")
	_, err := (&Client{Addr: "x", Dial: func(context.Context) (net.Conn, error) { return nil, errors.New("refused") }}).
		WaitReady(context.Background(), time.Millisecond, func() error { return dead })
	if !errors.Is(err, dead) {
		t.Fatalf("got %v, want the alive error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = (&Client{Addr: "x", Dial: func(context.Context) (net.Conn, error) { return nil, errors.New("refused") }}).
		WaitReady(ctx, time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("got %v, want deadline error mentioning the last attempt", err)
	}
}

// lineWriter hands every write to a channel, so a test can see output
// arrive while the command still runs.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

// Streamed stdin reaches the command while it runs (on a real TCP
// connection, whose half-close ends the input), and its end of file lets
// the command finish normally.
func TestExecStreamedStdin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Server{Token: "t"}).Serve(ctx, ln)
	c := &Client{Addr: ln.Addr().String(), Token: "t"}
	pr, pw := io.Pipe()
	out := make(lineWriter, 10)
	done := make(chan error, 1)
	var code int
	go func() {
		var err error
		code, err = c.ExecStream(ctx, ExecRequest{Argv: []string{"sh", "-c", "read x; echo got-$x; cat >/dev/null; echo end; exit 3"}}, pr, out, io.Discard)
		done <- err
	}()
	if _, err := pw.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-out:
		if got != "got-one\n" {
			t.Fatalf("first output %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no output while stdin is still open: input is not streamed")
	}
	select {
	case err := <-done:
		t.Fatalf("command ended before its input did: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	pw.Close()
	select {
	case err := <-done:
		if err != nil || code != 3 {
			t.Fatalf("exit %d, err %v; want 3", code, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("end of input did not end the command")
	}
	if got := <-out; got != "end\n" {
		t.Errorf("last output %q", got)
	}
}

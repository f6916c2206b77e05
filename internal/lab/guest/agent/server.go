package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/backbone-net/backbone/internal/node"
)

// DefaultEnv is the base environment of commands run by the agent.
var DefaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
	"TERM=dumb",
	"BACKBONE_VM=1",
}

// Server executes requests. It is used inside the guest.
type Server struct {
	// Token, when non-empty, must match the request's token.
	Token string
	// Env is the base environment (DefaultEnv when nil).
	Env []string
	// Info answers pings; nil answers with an empty Info.
	Info func() Info
	// Poweroff is called after the poweroff request was acknowledged.
	Poweroff func()
	// Logf receives one line per noteworthy event; nil discards.
	Logf func(format string, args ...any)
	// WaitDelay bounds how long output is still collected after the command
	// exited (daemons that inherit stdout would otherwise hold it forever).
	WaitDelay time.Duration
}

// Serve accepts connections until ctx is done or the listener fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go s.ServeConn(ctx, c)
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// ServeConn handles one request on c and closes it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	dec := json.NewDecoder(io.LimitReader(c, MaxRequest))
	var req Request
	if err := dec.Decode(&req); err != nil {
		writeExit(c, Exit{Code: -1, Error: "bad request: " + err.Error()})
		return
	}
	if s.Token != "" && subtle.ConstantTimeCompare([]byte(req.Token), []byte(s.Token)) != 1 {
		writeExit(c, Exit{Code: -1, Error: "bad agent token: the VM was started by another state directory or backbone run"})
		return
	}
	switch req.Op {
	case OpPing:
		info := Info{}
		if s.Info != nil {
			info = s.Info()
		}
		writeExit(c, Exit{Code: 0, Info: &info})
	case OpPoweroff:
		s.logf("agent: poweroff requested")
		writeExit(c, Exit{Code: 0})
		c.Close()
		if s.Poweroff != nil {
			s.Poweroff()
		}
	case OpExec:
		s.exec(ctx, c, dec, req.ExecRequest)
	default:
		writeExit(c, Exit{Code: -1, Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

func writeExit(w io.Writer, e Exit) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return WriteFrame(w, FrameExit, b)
}

// frameWriter turns writes into frames of one kind; mu serialises the two
// output streams on the connection.
type frameWriter struct {
	mu   *sync.Mutex
	w    io.Writer
	kind byte
	// failed is called when a write fails: the client is gone.
	failed func()
}

func (f frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > MaxFrame {
			chunk = chunk[:MaxFrame]
		}
		if err := WriteFrame(f.w, f.kind, chunk); err != nil {
			if f.failed != nil {
				f.failed()
			}
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

func (s *Server) exec(ctx context.Context, c net.Conn, dec *json.Decoder, req ExecRequest) {
	if len(req.Argv) == 0 {
		writeExit(c, Exit{Code: -1, Error: "exec: empty argv"})
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rest := io.MultiReader(dec.Buffered(), c)
	var stdin io.WriteCloser
	if !req.StreamStdin {
		// Any read result on the connection (normally EOF) means the
		// client went away: cancel the command.
		go func() {
			var b [1]byte
			for {
				if _, err := rest.Read(b[:]); err != nil {
					cancel()
					return
				}
			}
		}()
	}

	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	cmd.Env = node.MergeEnv(s.baseEnv(), req.Env)
	cmd.Dir = req.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	switch {
	case req.StreamStdin:
		w, err := cmd.StdinPipe()
		if err != nil {
			writeExit(c, Exit{Code: -1, Error: err.Error()})
			return
		}
		stdin = w
	case req.Stdin != nil:
		cmd.Stdin = bytes.NewReader(req.Stdin)
	}
	var mu sync.Mutex
	cmd.Stdout = frameWriter{mu: &mu, w: c, kind: FrameStdout, failed: cancel}
	cmd.Stderr = frameWriter{mu: &mu, w: c, kind: FrameStderr, failed: cancel}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = s.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = time.Second
	}
	if err := cmd.Start(); err != nil {
		code := -1
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		writeExit(c, Exit{Code: code, Error: err.Error()})
		return
	}
	if stdin != nil {
		// The client's half-close ends the input; a vanished client shows
		// as a failed write of the output, which kills the command. The
		// newline that ends the request line is not input.
		go func() {
			in := bufio.NewReader(rest)
			if b, err := in.Peek(1); err == nil && b[0] == '\n' {
				_, _ = in.Discard(1)
			}
			_, _ = io.Copy(stdin, in)
			stdin.Close()
		}()
	}
	err := cmd.Wait()
	code := 0
	var errText string
	if err != nil {
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		case errors.Is(err, exec.ErrWaitDelay):
			// The command exited; something it started kept its output open.
			code = cmd.ProcessState.ExitCode()
		default:
			code = -1
			errText = err.Error()
		}
	}
	if ctx.Err() != nil {
		s.logf("agent: %s cancelled by the client", req.Argv[0])
		return
	}
	mu.Lock()
	defer mu.Unlock()
	writeExit(c, Exit{Code: code, Error: errText})
}

func (s *Server) baseEnv() []string {
	if s.Env != nil {
		return s.Env
	}
	return DefaultEnv
}

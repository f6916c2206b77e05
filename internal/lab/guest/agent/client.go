package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Client talks to an agent.
type Client struct {
	// Addr is the agent's host:port (on the host: 127.0.0.1:<forwarded port>).
	Addr string
	// Token is sent with every request.
	Token string
	// Dial overrides how connections are made (tests); nil dials TCP Addr.
	Dial func(ctx context.Context) (net.Conn, error)
}

// Error is an error reported by the agent itself (as opposed to a
// transport failure).
type Error struct{ Msg string }

func (e *Error) Error() string { return "guest agent: " + e.Msg }

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	if c.Dial != nil {
		return c.Dial(ctx)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", c.Addr)
}

// do sends req and consumes frames until the exit frame.
func (c *Client) do(ctx context.Context, req Request, stdin io.Reader, stdout, stderr io.Writer) (Exit, error) {
	req.Token = c.Token
	conn, err := c.dial(ctx)
	if err != nil {
		return Exit{}, fmt.Errorf("connect to guest agent at %s: %w", c.Addr, err)
	}
	defer conn.Close()
	// Closing the connection is how a running command gets cancelled.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	line, err := json.Marshal(req)
	if err != nil {
		return Exit{}, err
	}
	line = append(line, '\n')
	// Write in a goroutine: on net.Pipe (and with a large Stdin on TCP)
	// the write may not complete before the agent starts answering.
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(line)
		if err == nil && stdin != nil {
			// Streamed standard input, ended by a half-close.
			if _, err = io.Copy(conn, stdin); err == nil {
				if cw, ok := conn.(interface{ CloseWrite() error }); ok {
					err = cw.CloseWrite()
				}
			}
		}
		werr <- err
	}()

	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		kind, payload, err := ReadFrame(r)
		if err != nil {
			if ctx.Err() != nil {
				return Exit{}, ctx.Err()
			}
			select {
			case we := <-werr:
				if we != nil {
					err = we
				}
			default:
			}
			if errors.Is(err, io.EOF) {
				return Exit{}, fmt.Errorf("guest agent at %s closed the connection without an answer (still booting, or the command killed the agent?)", c.Addr)
			}
			return Exit{}, fmt.Errorf("read from guest agent at %s: %w", c.Addr, err)
		}
		switch kind {
		case FrameStdout, FrameStderr:
			w := stdout
			if kind == FrameStderr {
				w = stderr
			}
			if w != nil {
				if _, err := w.Write(payload); err != nil {
					return Exit{}, fmt.Errorf("write command output: %w", err)
				}
			}
		case FrameExit:
			var e Exit
			if err := json.Unmarshal(payload, &e); err != nil {
				return Exit{}, fmt.Errorf("bad exit frame from guest agent: %w", err)
			}
			return e, nil
		}
	}
}

// Exec runs req in the guest, streaming its output to stdout and stderr as
// it arrives (nil writers discard). It returns the command's exit code; err
// is set when the command could not be run or the connection failed.
// Cancelling ctx kills the command's process group in the guest.
func (c *Client) Exec(ctx context.Context, req ExecRequest, stdout, stderr io.Writer) (int, error) {
	return c.ExecStream(ctx, req, nil, stdout, stderr)
}

// ExecStream is Exec with the command's standard input streamed from
// stdin (when not nil) until its end.
func (c *Client) ExecStream(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	req.StreamStdin = stdin != nil
	e, err := c.do(ctx, Request{Op: OpExec, ExecRequest: req}, stdin, stdout, stderr)
	if err != nil {
		return -1, err
	}
	if e.Error != "" {
		return e.Code, &Error{Msg: e.Error}
	}
	return e.Code, nil
}

// Ping asks the agent for guest information.
func (c *Client) Ping(ctx context.Context) (Info, error) {
	e, err := c.do(ctx, Request{Op: OpPing}, nil, nil, nil)
	if err != nil {
		return Info{}, err
	}
	if e.Error != "" {
		return Info{}, &Error{Msg: e.Error}
	}
	if e.Info == nil {
		return Info{}, nil
	}
	return *e.Info, nil
}

// Poweroff asks the guest to sync its disks and power off. It returns once
// the agent acknowledged; the VM goes down shortly after.
func (c *Client) Poweroff(ctx context.Context) error {
	e, err := c.do(ctx, Request{Op: OpPoweroff}, nil, nil, nil)
	if err != nil {
		return err
	}
	if e.Error != "" {
		return &Error{Msg: e.Error}
	}
	return nil
}

// WaitReady pings until the agent answers, ctx is done, or alive (when
// non-nil) reports that the guest can no longer come up. Connection refused,
// reset and early EOF (what a port forward to a guest that is still booting
// looks like) are retried every interval.
func (c *Client) WaitReady(ctx context.Context, interval time.Duration, alive func() error) (Info, error) {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	var last error
	start := time.Now()
	for {
		if alive != nil {
			if err := alive(); err != nil {
				return Info{}, err
			}
		}
		// Through qemu's port forward, a connection made before the guest
		// is listening can hang (slirp retransmits the SYN to the guest
		// only after seconds) rather than fail: keep attempts short at
		// first, longer as the wait grows in case the guest is just slow.
		attempt := 300*time.Millisecond + time.Since(start)/10
		if attempt > 3*time.Second {
			attempt = 3 * time.Second
		}
		pctx, cancel := context.WithTimeout(ctx, attempt)
		info, err := c.Ping(pctx)
		cancel()
		if err == nil {
			return info, nil
		}
		var ae *Error
		if errors.As(err, &ae) {
			return Info{}, err // the agent answered, but refused: no point retrying
		}
		last = err
		select {
		case <-ctx.Done():
			return Info{}, fmt.Errorf("guest agent did not answer: %w (last attempt: %v)", ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// NewToken makes a secret for a guest's agent: the host writes it where
// the guest reads it (0600) and sends it with every request.
func NewToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

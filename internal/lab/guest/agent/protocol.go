// Package agent is the control channel between the host and the guest of a
// backbone VM: a small server that runs inside the guest and executes
// commands, and the client the host uses to talk to it.
//
// Wire protocol (one TCP connection per request):
//
//	client -> agent: one JSON object terminated by '\n' (Request); with
//	                 StreamStdin, then the command's standard input as raw
//	                 bytes, ended by a half-close (end of file)
//	agent -> client: frames until an exit frame, then the agent closes
//
// A frame is 1 byte kind, 4 bytes big-endian payload length, payload.
// Kinds: 1 stdout bytes, 2 stderr bytes, 3 exit (JSON Exit, always last).
// The client cancels a running command by closing the connection: the agent
// notices end-of-file on its read side (without StreamStdin) or a failed
// write, and kills the command's process group.
package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Frame kinds.
const (
	FrameStdout byte = 1
	FrameStderr byte = 2
	FrameExit   byte = 3
)

// Ops a request can ask for.
const (
	OpExec     = "exec"
	OpPing     = "ping"
	OpPoweroff = "poweroff"
)

// MaxFrame bounds one frame's payload; MaxRequest bounds the request line
// (it carries Stdin, so it is generous).
const (
	MaxFrame   = 1 << 20
	MaxRequest = 64 << 20
)

// ExecRequest describes one command to run in the guest. Argv[0] is looked
// up in PATH when it has no slash. Env entries ("K=V") are added to, and
// override, the agent's base environment. Dir defaults to "/". Stdin, when
// non-nil, is fed to the command; otherwise its stdin is /dev/null.
type ExecRequest struct {
	Argv  []string `json:"argv"`
	Env   []string `json:"env,omitempty"`
	Dir   string   `json:"dir,omitempty"`
	Stdin []byte   `json:"stdin,omitempty"`
	// StreamStdin: the bytes that follow the request on the connection
	// are the command's standard input, until the client half-closes.
	StreamStdin bool `json:"stream_stdin,omitempty"`
}

// Request is the JSON line a client sends.
type Request struct {
	Op    string `json:"op"`
	Token string `json:"token,omitempty"`
	ExecRequest
}

// Exit is the payload of the final frame. Code is the command's exit code
// (128+signal when killed by a signal). Error is set when the agent could not
// do what was asked (bad token, command not found, ...); Code is then -1 or
// 127. Info is set for ping.
type Exit struct {
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
	Info  *Info  `json:"info,omitempty"`
}

// Info describes the guest; the answer to a ping.
type Info struct {
	Kernel   string `json:"kernel"`
	Hostname string `json:"hostname"`
	// Uptime is the guest's /proc/uptime when the ping was answered.
	Uptime time.Duration `json:"uptime_ns"`
	// Init is what the guest's init did before starting the agent.
	Init *InitReport `json:"init,omitempty"`
}

// InitReport is written by the guest init (PID 1) and served by the agent.
type InitReport struct {
	// KernelBoot is the guest uptime when the initramfs started, Initramfs
	// the time it took until switch_root, InitExec the time from there to
	// the init binary running (loading it over 9p).
	KernelBoot time.Duration `json:"kernel_boot_ns"`
	Initramfs  time.Duration `json:"initramfs_ns"`
	InitExec   time.Duration `json:"init_exec_ns"`
	// Setup is the time init spent on mounts, modules and network.
	Setup time.Duration `json:"setup_ns"`
	// Modules is the time spent loading kernel modules (part of Setup).
	Modules       time.Duration     `json:"modules_ns"`
	ModulesLoaded []string          `json:"modules_loaded,omitempty"`
	ModuleErrors  map[string]string `json:"module_errors,omitempty"`
	Warnings      []string          `json:"warnings,omitempty"`
}

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, kind byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("frame payload of %d bytes exceeds the %d byte limit", len(payload), MaxFrame)
	}
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	// One write per frame keeps frames whole on stream sockets with
	// concurrent writers serialised by the caller.
	buf := make([]byte, 0, len(hdr)+len(payload))
	buf = append(buf, hdr[:]...)
	buf = append(buf, payload...)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (kind byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("agent sent a frame of %d bytes (limit %d): protocol mismatch between host and guest backbone binaries?", n, MaxFrame)
	}
	switch hdr[0] {
	case FrameStdout, FrameStderr, FrameExit:
	default:
		return 0, nil, fmt.Errorf("agent sent unknown frame kind %d: protocol mismatch between host and guest backbone binaries?", hdr[0])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

package guest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Uptime is the guest kernel's uptime.
func Uptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	f, _ := strconv.ParseFloat(fields[0], 64)
	return time.Duration(f * float64(time.Second))
}

// PowerOff syncs and powers the guest off (the kernel exits).
func PowerOff() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// Supervise is the rest of PID 1's life: it starts the agent (argv run
// from /proc/self/exe with env), restarts it when it exits, and reaps
// every orphan. It returns only when the agent keeps failing (five starts
// within a minute).
func Supervise(argv, env []string, logf func(string, ...any)) error {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	agentPID := 0
	var restarts []time.Time
	tooMany := func() bool {
		restarts = append(restarts, time.Now())
		return len(restarts) >= 5 && time.Since(restarts[len(restarts)-5]) < time.Minute
	}
	start := func() {
		p, err := os.StartProcess("/proc/self/exe", argv, &os.ProcAttr{
			Dir:   "/",
			Env:   env,
			Files: []*os.File{devnull, os.Stdout, os.Stderr},
		})
		if err != nil {
			logf("start agent: %v", err)
			agentPID = 0
			return
		}
		agentPID = p.Pid
		_ = p.Release()
	}
	start()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil {
			if err == unix.ECHILD {
				time.Sleep(time.Second)
			}
			if agentPID == 0 {
				if tooMany() {
					return fmt.Errorf("the agent cannot be started")
				}
				start()
			}
			continue
		}
		if pid != agentPID {
			continue // an orphan, reaped
		}
		logf("agent exited (%v); restarting", ws)
		if tooMany() {
			return fmt.Errorf("the agent keeps exiting")
		}
		time.Sleep(500 * time.Millisecond)
		start()
	}
}

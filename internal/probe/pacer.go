package probe

import (
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pacer wakes the engine's loop at fixed instants (start + n * every) on
// a thread of its own. A Go ticker wakes a goroutine only once the
// scheduler runs it, milliseconds late when the machine is busy (the lab's
// guest kernels keep every core busy while they forward probes); the
// pacer's thread sleeps in clock_nanosleep until an absolute deadline and,
// where the process may, runs under SCHED_FIFO, so the kernel wakes it
// first. It sleeps without giving up its Go P (a raw system call): the
// wake-up does not wait for the Go scheduler either. When it wakes more
// than a slot late it skips the slots it missed instead of sending a
// burst: the probes' timestamps then show the gap, and the achieved
// spacing reported says so.
type pacer struct {
	every    int64 // ns
	start    int64 // CLOCK_MONOTONIC ns of slot 0
	slot     int64
	realtime bool
}

// rtPriority is low among real-time priorities: above every normal
// thread, below the kernel's own real-time threads.
const rtPriority = 10

// schedOther is SCHED_OTHER, the normal policy.
const schedOther = 0

// newPacer locks the calling goroutine to its thread and makes the thread
// real-time if it can. The caller must call close on the same goroutine.
func newPacer(every time.Duration) *pacer {
	runtime.LockOSThread()
	p := &pacer{every: int64(every), start: monotonic()}
	param := struct{ priority int32 }{rtPriority}
	if _, _, errno := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, 0, unix.SCHED_FIFO, uintptr(unsafe.Pointer(&param))); errno == 0 {
		p.realtime = true
	}
	return p
}

// wait sleeps until the next slot and returns its number (slots missed
// while late are skipped).
func (p *pacer) wait() int64 {
	p.slot++
	now := monotonic()
	if late := now - (p.start + p.slot*p.every); late > p.every {
		p.slot += late / p.every
	}
	deadline := p.start + p.slot*p.every
	ts := unix.NsecToTimespec(deadline)
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_CLOCK_NANOSLEEP, unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		switch errno {
		case 0:
			return p.slot
		case unix.EINTR:
		default:
			// Never spin at real-time priority.
			time.Sleep(time.Duration(p.every))
			return p.slot
		}
	}
}

// close gives the thread back: normal scheduling, unlocked.
func (p *pacer) close() {
	if p.realtime {
		param := struct{ priority int32 }{0}
		_, _, _ = unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, 0, schedOther, uintptr(unsafe.Pointer(&param)))
	}
	runtime.UnlockOSThread()
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

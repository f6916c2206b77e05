package qemu

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/backbone-net/backbone/internal/lab/guest/agent"
	"github.com/backbone-net/backbone/internal/layout"
)

// SyncBinary makes the guest run the same backbone as hostPath: when the
// host's binary changed since the VM booted (a rebuild while the lab is
// up), it is copied into the state directory and, through the agent, over
// the guest's tmpfs copy. Commands forwarded to the guest then never run a
// stale binary.
func (m *Machine) SyncBinary(ctx context.Context, hostPath string) error {
	shared := hostBinary(m.StateDir)
	si, err := os.Stat(hostPath)
	if err != nil {
		return err
	}
	if di, err := os.Stat(shared); err == nil && di.Size() == si.Size() && di.ModTime().Equal(si.ModTime()) {
		return nil
	}
	if err := (layout.Lab{StateDir: m.StateDir}).InstallBinary(hostPath); err != nil {
		return fmt.Errorf("copy backbone into the VM's state: %w", err)
	}
	tmp := GuestBinaryPath + ".new"
	code, err := m.Exec(ctx, agent.ExecRequest{Argv: []string{"/bin/sh", "-c", fmt.Sprintf("cp %s %s && chmod 755 %s && mv %s %s", shared, tmp, tmp, tmp, GuestBinaryPath)}}, io.Discard, io.Discard)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("update the guest's backbone binary: exit %d", code)
	}
	return nil
}

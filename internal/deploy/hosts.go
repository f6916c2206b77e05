package deploy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/backbone-net/backbone/internal/node"
	"github.com/backbone-net/backbone/internal/sshnode"
)

// Hosts are deployed routers reached over SSH: the nodes verify and chaos
// run on when the backbone is not a lab.
type Hosts struct {
	clients map[string]*sshnode.Client
}

// DialHosts reaches every target at once; it reports every router it
// cannot reach, log into or trust, together.
func DialHosts(ctx context.Context, targets []sshnode.Target) (*Hosts, error) {
	clients, err := dialAll(ctx, targets)
	if err != nil {
		return nil, err
	}
	h := &Hosts{clients: map[string]*sshnode.Client{}}
	for _, c := range clients {
		h.clients[c.Name()] = c
	}
	return h, nil
}

// Node is the runner of a deployed router. CEs and the provider's
// underlay are not backbone's to log into.
func (h *Hosts) Node(name string) (node.Runner, error) {
	if c, ok := h.clients[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%s is not a deployed router of this backbone (only PE and P routers with a host are reached)", name)
}

// Close ends every connection.
func (h *Hosts) Close() {
	for _, c := range h.clients {
		c.Close()
	}
}

// dialAll dials every target at once; on any failure every connection
// made is closed and every failure reported.
func dialAll(ctx context.Context, targets []sshnode.Target) ([]*sshnode.Client, error) {
	out := make([]*sshnode.Client, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = sshnode.Dial(ctx, t)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range out {
			if c != nil {
				c.Close()
			}
		}
		return nil, err
	}
	return out, nil
}

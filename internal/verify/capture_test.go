package verify

import (
	"context"
	"fmt"
	"testing"

	"github.com/backbone-net/backbone/internal/node"
)

type fakeNodes map[string]node.Runner

func (f fakeNodes) Node(name string) (node.Runner, error) {
	if r, ok := f[name]; ok {
		return r, nil
	}
	return nil, fmt.Errorf("no node %q", name)
}

// A capture counts tcpdump's lines as they come until it is stopped.
func TestStartCapture(t *testing.T) {
	p := defaultPlan(t)
	lines := make(chan string)
	nodes := fakeNodes{"underlay": node.RunnerFunc(func(ctx context.Context, c node.Cmd) error {
		if c.Argv[0] != "tcpdump" {
			return fmt.Errorf("unexpected %v", c.Argv)
		}
		fmt.Fprintln(c.Stderr, "listening on any, link-type LINUX_SLL2")
		for {
			select {
			case l := <-lines:
				fmt.Fprint(c.Stdout, l)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})}
	c, err := StartCapture(context.Background(), p, nodes)
	if err != nil {
		t.Fatal(err)
	}
	lines <- "IP6 2001:db8:101::2 > 2001:db8:201::2: ESP(spi=0x1,seq=0x2), length 120\n"
	// A line in two writes, and a cleartext GRE packet.
	lines <- "IP6 2001:db8:101::2 > 2001:db8:201::2: GREv0, length 88: "
	lines <- "IP 10.20.0.222 > 224.0.0.5: OSPFv2, Hello\n"
	lines <- "IP6 2001:db8:201::2.500 > 2001:db8:101::2.500: isakmp: child_sa inf2\n"
	n := c.Stop()
	if n.ESP != 1 || n.IKE != 1 || n.Cleartext != 1 || n.Kinds["GRE"] != 1 || len(n.Examples) != 1 {
		t.Errorf("count = %+v", n)
	}
	if again := c.Stop(); again.ESP != 1 {
		t.Errorf("a second Stop: %+v", again)
	}
	if _, err := StartCapture(context.Background(), p, fakeNodes{}); err == nil {
		t.Error("a lab without an underlay node: no error")
	}
}

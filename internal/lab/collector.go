package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Collector runs commands in the lab's nodes (verify's data source): each
// command runs through `backbone lab-node`, inside the node's network and
// mount namespace, exactly as `backbone lab exec` would run it.
type Collector struct {
	Paths Paths
	self  string
}

// NewCollector returns a collector for the lab at p.
func NewCollector(p Paths) (*Collector, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return &Collector{Paths: p, self: self}, nil
}

// Run runs argv on node and returns its standard output.
func (c *Collector) Run(ctx context.Context, node string, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.self, append([]string{"lab-node", c.Paths.Name, node, "--"}, argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return stdout.Bytes(), fmt.Errorf("%s on %s: %v: %s", strings.Join(argv, " "), node, err, msg)
	}
	return stdout.Bytes(), nil
}

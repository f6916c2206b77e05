// Command backbone turns an IP/MPLS backbone intent into configs, a running
// lab, and proof that it works.
package main

import (
	"fmt"
	"os"

	"github.com/backbone-net/backbone/internal/cli"
)

func main() {
	code, err := cli.Execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "backbone:", err)
	}
	os.Exit(code)
}

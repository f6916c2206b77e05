// Package console reads the console log of a lab guest kernel (a UML
// router or the qemu VM) for error messages: when a guest does not come
// up, its last lines, and the lines that usually say why (the guest
// init's and agent's, kernel panics) even when they scrolled out.
package console

import (
	"fmt"
	"os"
	"strings"
)

// keyMarks are substrings of the lines that explain a failed boot.
var keyMarks = []string{"backbone-", "lab-guest", "Kernel panic", "FATAL"}

// Tail returns the last n lines of the log at path, preceded by up to 15
// earlier key lines; or a note that the log is missing.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	cut := max(len(lines)-n, 0)
	var key []string
	for _, l := range lines[:cut] {
		for _, m := range keyMarks {
			if strings.Contains(l, m) {
				key = append(key, l)
				break
			}
		}
	}
	if len(key) == 0 {
		return strings.Join(lines[cut:], "\n")
	}
	return fmt.Sprintf("--- key lines of %s ---\n%s\n--- last lines of %s ---\n%s",
		path, strings.Join(key[max(len(key)-15, 0):], "\n"), path, strings.Join(lines[cut:], "\n"))
}

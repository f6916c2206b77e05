package intent

import (
	"fmt"
	"sort"
	"strings"
)

// Severity of a Problem.
type Severity string

const (
	// Error makes the intent unusable: nothing is planned or written.
	Error Severity = "error"
	// Warning is a choice with a known cost; the intent is still usable.
	Warning Severity = "warning"
)

// Problem is one finding of validation, located by its path in the intent
// (e.g. "links[3].between[1]") and, when known, its line in the source.
type Problem struct {
	Severity Severity `json:"severity"`
	Path     string   `json:"path"`
	Line     int      `json:"line,omitempty"`
	Message  string   `json:"message"`
	Hint     string   `json:"hint,omitempty"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	if p.Hint != "" {
		b.WriteString(" (")
		b.WriteString(p.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Problems is every finding of a validation run.
type Problems []Problem

// Errors returns only the problems of severity Error.
func (ps Problems) Errors() Problems { return ps.filter(Error) }

// Warnings returns only the problems of severity Warning.
func (ps Problems) Warnings() Problems { return ps.filter(Warning) }

func (ps Problems) filter(s Severity) Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == s {
			out = append(out, p)
		}
	}
	return out
}

// Err returns an error listing every Error problem, or nil if there is none.
func (ps Problems) Err() error {
	errs := ps.Errors()
	if len(errs) == 0 {
		return nil
	}
	return &InvalidError{Problems: errs}
}

// InvalidError is returned when an intent has errors.
type InvalidError struct{ Problems Problems }

func (e *InvalidError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return fmt.Sprintf("invalid intent, %d error(s):\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// collector accumulates problems during validation.
type collector struct {
	ps    Problems
	lines map[string]int
}

func (c *collector) errorf(path, hint, format string, args ...any) {
	c.add(Error, path, hint, format, args...)
}

func (c *collector) warnf(path, hint, format string, args ...any) {
	c.add(Warning, path, hint, format, args...)
}

func (c *collector) add(s Severity, path, hint, format string, args ...any) {
	c.ps = append(c.ps, Problem{Severity: s, Path: path, Line: lineOf(c.lines, path), Message: fmt.Sprintf(format, args...), Hint: hint})
}

// lineOf finds the source line of path, or of its closest ancestor.
func lineOf(lines map[string]int, path string) int {
	for p := path; p != ""; {
		if l, ok := lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// Sort orders problems by line, then path, errors first, for stable output.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Severity != b.Severity {
			return a.Severity == Error
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Path < b.Path
	})
}

package intent

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"gopkg.in/yaml.v3"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default backbone as YAML text.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Document is a loaded intent with the source facts validation needs.
type Document struct {
	Intent *Intent
	// Source names where the intent came from ("default" or a file path).
	Source string
	// lines maps a path such as "links[3].between" to its source line.
	lines map[string]int
}

// LoadFile reads an intent from path, or the embedded default if path is
// "", or standard input if path is "-".
func LoadFile(path string) (*Document, error) { return LoadFrom(path, os.Stdin) }

// LoadFrom is LoadFile with "-" reading from stdin.
func LoadFrom(path string, stdin io.Reader) (*Document, error) {
	if path == "" {
		return Load(defaultYAML, "default")
	}
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read intent: %w", err)
	}
	return Load(data, path)
}

// Load parses YAML strictly (unknown fields are errors) and applies
// defaults. It does not validate: call Validate.
func Load(data []byte, source string) (*Document, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: the intent is empty; start from `backbone intent default`", source)
	}
	if root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: line %d: the intent must be a mapping (name:, routers:, links: ...)", source, root.Content[0].Line)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	in := &Intent{}
	if err := dec.Decode(in); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	lines := map[string]int{}
	walkLines(root.Content[0], "", lines)
	in.applyDefaults()
	return &Document{Intent: in, Source: source, lines: lines}, nil
}

func walkLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			walkLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			lines[p] = c.Line
			walkLines(c, p, lines)
		}
	}
}

// Validate checks the document and returns every problem found.
func (d *Document) Validate() Problems {
	c := &collector{lines: d.lines}
	validate(d.Intent, c)
	c.ps.Sort()
	return c.ps
}

// LineOf returns the source line of a path, or 0 if unknown. Later stages
// (the plan) use it to locate their own problems.
func (d *Document) LineOf(path string) int { return lineOf(d.lines, path) }

package intent

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// Format writes an intent as YAML that Load reads back to the same
// intent, leaving out what is unset: empty strings, nulls, empty lists,
// and the per-object overrides whose zero value means "the default"
// (a link's cost, mtu, underlay_mtu, encap_limit, unnumbered; a VRF's
// table; a router's asn). Backbone-wide values are kept as they are.
func Format(in *Intent) ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(in); err != nil {
		return nil, err
	}
	prune(&n, 0)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// zeroMeansDefault are the keys left out when zero or false.
var zeroMeansDefault = map[string]bool{
	"cost": true, "mtu": true, "underlay_mtu": true, "encap_limit": true, "unnumbered": true, "table": true, "asn": true,
}

func prune(n *yaml.Node, depth int) {
	for _, c := range n.Content {
		prune(c, depth+1)
	}
	if n.Kind == yaml.MappingNode {
		var kept []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			empty := (v.Kind == yaml.ScalarNode && (v.Tag == "!!null" || (v.Tag == "!!str" && v.Value == ""))) ||
				((v.Kind == yaml.SequenceNode || v.Kind == yaml.MappingNode) && len(v.Content) == 0)
			// Below the top level only: the backbone's own asn stays.
			zero := depth > 0 && zeroMeansDefault[k.Value] && v.Kind == yaml.ScalarNode && (v.Value == "0" || v.Value == "false")
			if !empty && !zero {
				kept = append(kept, k, v)
			}
		}
		n.Content = kept
	}
	// Lists of scalars, and short mappings of scalars (4 keys at most),
	// read better on one line.
	short := n.Kind == yaml.SequenceNode || (n.Kind == yaml.MappingNode && len(n.Content) <= 8)
	if depth > 1 && short && len(n.Content) > 0 && allScalars(n.Content) {
		n.Style = yaml.FlowStyle
	}
}

func allScalars(ns []*yaml.Node) bool {
	for _, c := range ns {
		if c.Kind != yaml.ScalarNode {
			return false
		}
	}
	return true
}

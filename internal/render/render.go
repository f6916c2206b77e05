// Package render turns a plan into the files each router needs: FRR,
// strongSwan and Linux configuration. It is pure: the same plan and
// secrets give byte-identical files, and nothing touches the system except
// Write, which puts a rendered set into a directory.
package render

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/frr"
	"github.com/backbone-net/backbone/internal/render/linux"
	"github.com/backbone-net/backbone/internal/render/strongswan"
)

// File is one rendered file, relative to the output directory.
type File struct {
	Path string
	Data []byte
	Mode os.FileMode
}

// Options control runtime paths baked into the configs.
type Options struct {
	// RuntimeDir is where routers keep runtime files (sockets, logs); each
	// router uses RuntimeDir/<router>. Default: the lab's (layout.RuntimeDir).
	RuntimeDir string
}

// Files renders every file of the plan, sorted by path.
func Files(p *plan.Plan, keys strongswan.Credentials, opt Options) []File {
	if opt.RuntimeDir == "" {
		opt.RuntimeDir = layout.RuntimeDir(p.Name)
	}
	var out []File
	add := func(path string, data []byte, mode os.FileMode) {
		out = append(out, File{Path: path, Data: data, Mode: mode})
	}
	pj, _ := json.MarshalIndent(p, "", "  ")
	add("plan.json", append(pj, '\n'), 0o644)
	for _, r := range p.Routers {
		add(filepath.Join(r.Name, "frr.conf"), frr.Render(p, r), 0o644)
		h := linux.Render(p, r)
		hj, _ := json.MarshalIndent(h, "", "  ")
		add(filepath.Join(r.Name, "linux.json"), append(hj, '\n'), 0o644)
		add(filepath.Join(r.Name, "linux.sh"), linux.Script(h), 0o755)
		if strongswan.Needed(r) {
			paths := strongswan.Paths{Dir: filepath.Join(opt.RuntimeDir, r.Name)}
			add(filepath.Join(r.Name, strongswan.ConfFile), strongswan.StrongswanConf(r, paths), 0o644)
			add(filepath.Join(r.Name, strongswan.SwanctlFile), strongswan.SwanctlConf(p, r), 0o644)
			add(filepath.Join(r.Name, strongswan.SecretsFile), strongswan.SecretsConf(p, r, keys), 0o600)
			if p.Encryption.Auth == "pubkey" {
				cert, key := keys.RouterCert(r.Name)
				add(filepath.Join(r.Name, strongswan.CACertFile()), keys.CACert(), 0o644)
				add(filepath.Join(r.Name, strongswan.CertFile(r.Name)), cert, 0o644)
				add(filepath.Join(r.Name, strongswan.KeyFile(r.Name)), key, 0o600)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Write puts files under dir, creating folders as needed. Each file is
// written to a temporary name and renamed, so readers never see half a file.
func Write(dir string, files []File) error {
	for _, f := range files {
		path := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("render: %w", err)
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, f.Data, f.Mode); err != nil {
			return fmt.Errorf("render: %w", err)
		}
		if err := os.Chmod(tmp, f.Mode); err != nil { // umask may have narrowed it
			return fmt.Errorf("render: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("render: %w", err)
		}
	}
	return nil
}

// Package secrets keeps the backbone's generated secrets (IPsec pre-shared
// keys) outside the intent, in a 0600 JSON file that is created once and
// reused, so that rendered configs stay byte-identical across runs.
package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Store holds secrets by name.
type Store struct {
	path string
	// PSKs maps a link key ("pe101-pe201", names sorted) to its key.
	PSKs map[string]string `json:"psks"`
	// CA and Certs back certificate authentication (encryption.auth: pubkey).
	CA      *KeyPair            `json:"ca,omitempty"`
	Certs   map[string]*KeyPair `json:"certs,omitempty"`
	changed bool
}

// DefaultPath is where the secrets of backbone "name" live unless told
// otherwise: $BACKBONE_SECRETS_DIR, else $XDG_STATE_HOME/backbone, else
// ~/.local/state/backbone.
func DefaultPath(name string) (string, error) {
	dir := os.Getenv("BACKBONE_SECRETS_DIR")
	if dir == "" {
		if x := os.Getenv("XDG_STATE_HOME"); x != "" {
			dir = filepath.Join(x, "backbone")
		} else {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("secrets: no home directory: %w; set BACKBONE_SECRETS_DIR", err)
			}
			dir = filepath.Join(home, ".local", "state", "backbone")
		}
	}
	return filepath.Join(dir, name+".secrets.json"), nil
}

// Open reads the store at path, or returns an empty one if it does not
// exist yet. It refuses a store that others can read.
func Open(path string) (*Store, error) {
	s := &Store{path: path, PSKs: map[string]string{}}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets: %s is readable by others (mode %v); run: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("secrets: %s: %w", path, err)
	}
	if s.PSKs == nil {
		s.PSKs = map[string]string{}
	}
	return s, nil
}

// Path is where the store is kept.
func (s *Store) Path() string { return s.path }

// PSK returns the key for name, generating a 256-bit one if it is missing.
func (s *Store) PSK(name string) string {
	if k, ok := s.PSKs[name]; ok {
		return k
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	k := base64.StdEncoding.EncodeToString(buf)
	s.PSKs[name] = k
	s.changed = true
	return k
}

// SetPSK sets the key for name (kept by Save if it changed).
func (s *Store) SetPSK(name, key string) {
	if s.PSKs[name] != key {
		s.PSKs[name] = key
		s.changed = true
	}
}

// Names returns the names of all keys, sorted.
func (s *Store) Names() []string {
	var out []string
	for k := range s.PSKs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Save writes the store with mode 0600 if anything was added.
func (s *Store) Save() error {
	if !s.changed {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	s.changed = false
	return nil
}

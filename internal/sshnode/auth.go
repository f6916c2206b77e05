package sshnode

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keySet is the keys offered to log in, in order, with how messages name
// them.
type keySet struct {
	signers []ssh.Signer
	names   []string
	// unusable are keys that were found but cannot be offered, and why:
	// told when the login is refused, since one of them may be the key.
	unusable []string
	// agent is the connection to ssh-agent, needed until the login is done.
	agent net.Conn
}

// defaultKeyFiles are the keys of ~/.ssh that OpenSSH offers by default
// and that matter for routers.
var defaultKeyFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// loadKeys gathers the keys to log in to t with: t.KeyFile, or else those
// of the SSH agent and then ~/.ssh's default ones.
func loadKeys(t Target) (*keySet, error) {
	ks := &keySet{}
	agentErr := ks.addAgent()
	if t.KeyFile != "" {
		err := ks.addFile(t.KeyFile, false)
		var pe *passphraseError
		switch {
		case errors.As(err, &pe):
			ks.close()
			agentNote := ""
			if agentErr != nil {
				agentNote = " (" + agentErr.Error() + ")"
			}
			return nil, fmt.Errorf("%s: SSH key file %s is protected by a passphrase, which backbone does not ask for: load it into ssh-agent (eval $(ssh-agent); ssh-add %s) and run again from that shell%s",
				t.Name, t.KeyFile, t.KeyFile, agentNote)
		case err != nil:
			ks.close()
			return nil, fmt.Errorf("%s: %v", t.Name, err)
		}
		// Only the key asked for is offered: an agent holding many keys
		// would otherwise use up the server's MaxAuthTries first.
		ks.keep(t.KeyFile)
		return ks, nil
	}

	home, err := homeDir()
	if err != nil {
		home = "~"
	}
	for _, name := range defaultKeyFiles {
		path := filepath.Join(home, ".ssh", name)
		if err := ks.addFile(path, true); err != nil {
			ks.unusable = append(ks.unusable, err.Error())
		}
	}
	if len(ks.signers) == 0 {
		var why []string
		if agentErr != nil {
			why = append(why, agentErr.Error())
		} else if os.Getenv("SSH_AUTH_SOCK") == "" {
			why = append(why, "SSH_AUTH_SOCK is not set")
		} else {
			why = append(why, "ssh-agent holds no key")
		}
		if len(ks.unusable) == 0 {
			why = append(why, fmt.Sprintf("there is no %s/.ssh/%s", home, strings.Join(defaultKeyFiles, ", ")))
		}
		why = append(why, ks.unusable...)
		ks.close()
		return nil, fmt.Errorf("%s: no SSH key to log in with: %s: set key in the inventory, or load a key into ssh-agent",
			t.Name, strings.Join(why, "; "))
	}
	return ks, nil
}

// passphraseError is a key file that needs a passphrase.
type passphraseError struct{ path string }

func (e *passphraseError) Error() string {
	return fmt.Sprintf("%s is protected by a passphrase: load it into ssh-agent (ssh-add %s)", e.path, e.path)
}

// addAgent adds the keys of the SSH agent at $SSH_AUTH_SOCK, if any.
func (ks *keySet) addAgent() error {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return fmt.Errorf("ssh-agent at SSH_AUTH_SOCK=%s does not answer: %v", sock, err)
	}
	ac := agent.NewClient(conn)
	keys, err := ac.List()
	if err == nil {
		var signers []ssh.Signer
		if signers, err = ac.Signers(); err == nil {
			ks.agent = conn
			for _, s := range signers {
				name := "ssh-agent"
				for _, k := range keys {
					if bytes.Equal(k.Marshal(), s.PublicKey().Marshal()) && k.Comment != "" {
						name = "ssh-agent: " + k.Comment
					}
				}
				ks.add(s, name)
			}
			return nil
		}
	}
	conn.Close()
	return fmt.Errorf("ssh-agent at SSH_AUTH_SOCK=%s: %v", sock, err)
}

// addFile adds the private key in path. A passphrase-protected key is
// fine when the agent holds it already. optional files may be missing.
func (ks *keySet) addFile(path string, optional bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("cannot read SSH key file %s: %v: check key in the inventory", path, unwrapPath(err))
	}
	signer, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		if pm.PublicKey != nil && ks.has(pm.PublicKey) >= 0 {
			ks.names[ks.has(pm.PublicKey)] += " = " + path
			return nil
		}
		return &passphraseError{path: path}
	case err != nil:
		return fmt.Errorf("SSH key file %s is not a usable private key (%v): point key in the inventory at a private key, not its .pub", path, err)
	}
	if i := ks.has(signer.PublicKey()); i >= 0 {
		ks.names[i] += " = " + path
		return nil
	}
	ks.add(signer, path)
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (ks *keySet) add(s ssh.Signer, from string) {
	ks.signers = append(ks.signers, s)
	ks.names = append(ks.names, from)
}

// has returns the index of the signer for k, or -1.
func (ks *keySet) has(k ssh.PublicKey) int {
	for i, s := range ks.signers {
		if bytes.Equal(s.PublicKey().Marshal(), k.Marshal()) {
			return i
		}
	}
	return -1
}

// keep drops every key but the one loaded from path.
func (ks *keySet) keep(path string) {
	for i, name := range ks.names {
		if name == path || strings.HasSuffix(name, " = "+path) {
			ks.signers, ks.names = ks.signers[i:i+1], ks.names[i:i+1]
			return
		}
	}
}

// describe lists the keys offered, for the message of a refused login.
func (ks *keySet) describe() string {
	d := make([]string, len(ks.signers))
	for i, s := range ks.signers {
		d[i] = fmt.Sprintf("%s (%s)", describeKey(s.PublicKey()), ks.names[i])
	}
	out := strings.Join(d, ", ")
	if len(ks.unusable) > 0 {
		out += "; not usable: " + strings.Join(ks.unusable, "; ")
	}
	return out
}

// close ends the agent connection: keys are needed only to log in.
func (ks *keySet) close() {
	if ks.agent != nil {
		ks.agent.Close()
		ks.agent = nil
	}
}

package sshnode

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a router whose host key is not the one on file: either
// it is not on file at all (Known is empty) or it changed. A changed key is
// never accepted: it is what a man-in-the-middle looks like.
type HostKeyError struct {
	// Node is the router's name.
	Node string
	// Host is the host:port that was dialled.
	Host string
	// Key is the key the router presented; nil when it offered none of
	// the key types on file for it (then Offered lists what it offers).
	Key     ssh.PublicKey
	Offered []string
	// KnownHosts is the known_hosts file checked.
	KnownHosts string
	// Known are the keys on file for Host; empty for an unknown host.
	Known []knownhosts.KnownKey
}

// Unknown reports whether the host has no key on file at all (as opposed
// to a changed one).
func (e *HostKeyError) Unknown() bool { return len(e.Known) == 0 }

func (e *HostKeyError) Error() string {
	host, port, _ := net.SplitHostPort(e.Host)
	where := host + " port " + port
	if e.Unknown() {
		return fmt.Sprintf("%s: the host key of %s is unknown: it is %s and %s has no key for %s: check the fingerprint (on %s: %s), then run again with --accept-new-host-keys",
			e.Node, where, describeKey(e.Key), e.KnownHosts, knownhosts.Normalize(e.Host), e.Node, fingerprintHint(e.Key.Type()))
	}
	// The lines to remove: those of the presented key's type, which it
	// contradicts; when it has none of them on file, all of the host's.
	stale := e.Known
	if e.Key != nil {
		var same []knownhosts.KnownKey
		for _, k := range e.Known {
			if k.Key.Type() == e.Key.Type() {
				same = append(same, k)
			}
		}
		if len(same) > 0 {
			stale = same
		}
	}
	onFile := make([]string, len(stale))
	lines := make([]string, len(stale))
	for i, k := range stale {
		onFile[i] = fmt.Sprintf("%s:%d has %s", k.Filename, k.Line, describeKey(k.Key))
		lines[i] = strconv.Itoa(k.Line)
	}
	var now, hint string
	if e.Key != nil {
		now, hint = "it is now "+describeKey(e.Key), fingerprintHint(e.Key.Type())
	} else {
		now, hint = "it no longer offers that key type (it offers "+strings.Join(e.Offered, ", ")+")", fingerprintHint("")
	}
	plural := ""
	if len(lines) > 1 {
		plural = "s"
	}
	return fmt.Sprintf("%s: the host key of %s has changed: %s, but %s: someone may be intercepting the connection (man-in-the-middle), so it is refused; "+
		"if %s was reinstalled and its new fingerprint checks out (on %s: %s), remove line%s %s of %s (ssh-keygen -R '%s' -f %s), then run again with --accept-new-host-keys",
		e.Node, where, now, strings.Join(onFile, "; "), e.Node, e.Node, hint, plural, strings.Join(lines, ", "), stale[0].Filename, knownhosts.Normalize(e.Host), stale[0].Filename)
}

// describeKey is a key as OpenSSH shows it: type and SHA256 fingerprint.
func describeKey(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// fingerprintHint is the command that shows a host key's fingerprint on
// the router itself, for the stock key file of that type.
func fingerprintHint(keyType string) string {
	name := "*"
	switch {
	case strings.Contains(keyType, "ed25519"):
		name = "ed25519"
	case strings.Contains(keyType, "ecdsa"):
		name = "ecdsa"
	case strings.Contains(keyType, "rsa"):
		name = "rsa"
	}
	return "ssh-keygen -lf /etc/ssh/ssh_host_" + name + "_key.pub"
}

// hostKeys checks one router's host key against a known_hosts file.
type hostKeys struct {
	t    Target
	path string
	// db is the parsed file; nil when it does not exist (no host known).
	db ssh.HostKeyCallback
	// known are the plain keys on file for the router.
	known []knownhosts.KnownKey
	// algorithms restricts the host key algorithms to those of the known
	// keys (nil: any).
	algorithms []string

	mu sync.Mutex
	// refused is why the last check failed.
	refused error
	// added is the key written to the file by this dial: key exchanges
	// after the first (rekeying) present it again.
	added ssh.PublicKey
}

// loadHostKeys reads t.KnownHosts and finds the keys on file for t.
func loadHostKeys(t Target) (*hostKeys, error) {
	h := &hostKeys{t: t, path: t.KnownHosts}
	data, err := os.ReadFile(h.path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil // like an empty file: every host is unknown
	}
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read known_hosts file: %v: check its permissions, or set known_hosts in the inventory", t.Name, err)
	}
	h.db, err = knownhosts.New(h.path)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot use known_hosts file %s: %v: fix or remove that line", t.Name, h.path, err)
	}

	// knownhosts has no lookup: checking a key that matches nothing makes
	// it list the keys on file for the host.
	var ke *knownhosts.KeyError
	if errors.As(h.db(t.hostPort(), &net.TCPAddr{IP: net.IPv4zero, Port: t.Port}, probeKey{}), &ke) {
		h.known = ke.Want
	}
	if len(h.known) > 0 {
		// As OpenSSH does: a router with several host keys otherwise
		// presents whichever type the client prefers, possibly not the one
		// on file, and that would look like a changed key.
		for _, k := range h.known {
			for _, a := range keyAlgorithms(k.Key.Type()) {
				if !slices.Contains(h.algorithms, a) {
					h.algorithms = append(h.algorithms, a)
				}
			}
		}
		if bytes.Contains(data, []byte("@cert-authority")) {
			// A certificate signed by a CA on file is as good as a key.
			h.algorithms = append(h.algorithms,
				ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
				ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01)
		}
	}
	return h, nil
}

// keyAlgorithms are the host key algorithms that present a key of type
// keyType: an RSA key signs with SHA-2 (preferred) or SHA-1.
func keyAlgorithms(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// restricted reports whether the host key algorithms were narrowed to the
// keys on file.
func (h *hostKeys) restricted() bool { return len(h.algorithms) > 0 }

// failure is why the host key was refused, if it was.
func (h *hostKeys) failure() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refused
}

// check is the ssh.HostKeyCallback.
func (h *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := error(&knownhosts.KeyError{})
	if h.db != nil {
		err = h.db(hostname, remote, key)
	}
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &ke) && len(ke.Want) == 0:
		if h.added != nil && bytes.Equal(h.added.Marshal(), key.Marshal()) {
			return nil
		}
		if !h.t.AcceptNewHostKey {
			h.refused = &HostKeyError{Node: h.t.Name, Host: h.t.hostPort(), Key: key, KnownHosts: h.path}
			return h.refused
		}
		if err := h.add(key); err != nil {
			h.refused = err
			return err
		}
		h.added = key
		return nil
	case errors.As(err, &ke):
		h.refused = &HostKeyError{Node: h.t.Name, Host: h.t.hostPort(), Key: key, KnownHosts: h.path, Known: ke.Want}
	case errors.As(err, &re):
		h.refused = fmt.Errorf("%s: the host key of %s (%s) is marked @revoked in %s:%d: refusing to connect",
			h.t.Name, h.t.where(), describeKey(key), re.Revoked.Filename, re.Revoked.Line)
	default:
		h.refused = fmt.Errorf("%s: the host key of %s (%s) does not check out against %s: %v",
			h.t.Name, h.t.where(), describeKey(key), h.path, err)
	}
	return h.refused
}

// add appends key for the router to the known_hosts file, creating it
// (and its directory) when missing, in the format OpenSSH writes.
func (h *hostKeys) add(key ssh.PublicKey) error {
	fail := func(err error) error {
		return fmt.Errorf("%s: cannot add the host key of %s to %s: %v: check the permissions of that file and its directory, or set known_hosts in the inventory",
			h.t.Name, h.t.where(), h.path, err)
	}
	if err := os.MkdirAll(filepath.Dir(h.path), 0o700); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(h.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fail(err)
	}
	line := knownhosts.Line([]string{h.t.hostPort()}, key) + "\n"
	// A file last edited by hand may lack its final newline.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	// One write: parallel dials appending to the same file do not mix
	// their lines.
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	return nil
}

// probeKey is a key that matches no line of a known_hosts file.
type probeKey struct{}

func (probeKey) Type() string                        { return "backbone-probe" }
func (probeKey) Marshal() []byte                     { return []byte("backbone-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key verifies nothing") }

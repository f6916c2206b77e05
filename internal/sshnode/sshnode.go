// Package sshnode runs commands on real routers over SSH: it is the
// node.Runner of a deployment to hardware, where the lab uses namespaces
// and guest agents. One Client holds one SSH connection to one router and
// runs each command in its own session on it, so verify's parallel checks
// share the connection.
//
// It behaves like OpenSSH's client with StrictHostKeyChecking=yes (or
// accept-new when asked): host keys are checked against a known_hosts
// file, a changed key is never accepted, and only public keys are offered.
package sshnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/backbone-net/backbone/internal/lab/namespace"
)

// Target is how to reach one router over SSH.
type Target struct {
	// Name is the router's name, used in every error message.
	Name string
	// Address is the router's IP address or host name.
	Address string
	// Port is sshd's port (0: 22).
	Port int
	// User logs in (empty: root).
	User string
	// KeyFile is the private key to log in with. Empty: the keys of the
	// SSH agent (SSH_AUTH_SOCK), then ~/.ssh/id_ed25519, id_ecdsa and
	// id_rsa of the current user.
	KeyFile string
	// KnownHosts is the known_hosts file (empty: ~/.ssh/known_hosts).
	KnownHosts string
	// Netns, when set, is a named network namespace of this machine to
	// dial from, like `ip netns exec NAME ssh ...`.
	Netns string
	// AcceptNewHostKey adds the key of a host not yet in KnownHosts to it.
	// A changed key is refused all the same.
	AcceptNewHostKey bool
	// Timeout bounds the dial and the SSH handshake (0: 10s).
	Timeout time.Duration
}

const (
	defaultPort    = 22
	defaultUser    = "root"
	defaultTimeout = 10 * time.Second
	// keepaliveEvery is how often an idle or busy connection is probed:
	// a router that died without closing TCP is noticed within two
	// intervals instead of when the kernel gives up retransmitting.
	keepaliveEvery = 15 * time.Second
	// maxSessions is how many commands run at once on one connection:
	// one less than OpenSSH's default MaxSessions (10), beyond which the
	// server refuses sessions, so that cancelling can still open the
	// session that kills a command. Run queues beyond it.
	maxSessions = 9
	// cancelGrace is how long a cancelled Run tries to kill the command
	// and waits for the router to confirm the end of the session before
	// returning anyway (the router may be the thing that hangs).
	cancelGrace = 2 * time.Second
)

// withDefaults fills in the documented defaults and checks what cannot be
// defaulted.
func (t Target) withDefaults() (Target, error) {
	t.Address = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(t.Address), "["), "]")
	if t.Name == "" {
		t.Name = t.Address
	}
	if t.Address == "" {
		return t, fmt.Errorf("%s: no address to reach it over SSH: set address in the inventory", orUnnamed(t.Name))
	}
	if t.Port == 0 {
		t.Port = defaultPort
	}
	if t.Port < 0 || t.Port > 65535 {
		return t, fmt.Errorf("%s: SSH port %d is out of range: use 1-65535 in the inventory", t.Name, t.Port)
	}
	if t.User == "" {
		t.User = defaultUser
	}
	if t.Timeout <= 0 {
		t.Timeout = defaultTimeout
	}
	if t.KnownHosts == "" {
		home, err := homeDir()
		if err != nil {
			return t, fmt.Errorf("%s: no known_hosts file given and no home directory to find ~/.ssh/known_hosts: %v", t.Name, err)
		}
		t.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	return t, nil
}

func orUnnamed(name string) string {
	if name == "" {
		return "router"
	}
	return name
}

// homeDir is the current user's home: $HOME as Go programs read it, else
// the password database as OpenSSH reads it.
func homeDir() (string, error) {
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return h, nil
	}
	u, err := user.Current()
	if err != nil {
		return "", err
	}
	return u.HomeDir, nil
}

// hostPort is how the router's sshd is written for net and knownhosts.
func (t Target) hostPort() string { return net.JoinHostPort(t.Address, strconv.Itoa(t.Port)) }

// where is how error messages name the router's sshd.
func (t Target) where() string { return fmt.Sprintf("%s port %d", t.Address, t.Port) }

// Client is an SSH connection to one router. It implements node.Runner;
// Run may be called from several goroutines at once.
type Client struct {
	t    Target
	conn *ssh.Client
	// slots bounds the sessions open at once (see maxSessions).
	slots chan struct{}
	// done is closed once the connection is closed, for whatever reason.
	done      chan struct{}
	closeOnce sync.Once

	mu sync.Mutex
	// lost says why the connection ended when it was not Close.
	lost error
	// open counts the sessions open now; lastClose is when one last
	// ended (the server frees it a moment later).
	open      int
	lastClose time.Time
}

// Dial connects to the router, checks its host key and logs in. ctx
// bounds the whole dial as well as Target.Timeout does; the connection
// itself outlives ctx, until Close.
func Dial(ctx context.Context, t Target) (*Client, error) {
	return dial(ctx, t, keepaliveEvery)
}

// dial is Dial with the keepalive interval as a parameter (tests).
func dial(ctx context.Context, t Target, keepalive time.Duration) (*Client, error) {
	t, err := t.withDefaults()
	if err != nil {
		return nil, err
	}
	// Keys and known_hosts first: their problems are local, and telling
	// them without touching the network keeps the messages simple.
	keys, err := loadKeys(t)
	if err != nil {
		return nil, err
	}
	defer keys.close()
	hk, err := loadHostKeys(t)
	if err != nil {
		return nil, err
	}

	dctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	raw, err := DialTCP(dctx, t)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: connecting to %s: %w", t.Name, t.where(), ctx.Err())
		}
		return nil, reachError(t, err)
	}

	// The handshake has no context of its own: a deadline bounds it and
	// cancelling ctx closes the socket under it.
	deadline, _ := dctx.Deadline()
	_ = raw.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { raw.Close() })
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(keys.signers...)},
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms,
	}
	sc, chans, reqs, err := ssh.NewClientConn(raw, t.hostPort(), cfg)
	timedOut := !stop() && ctx.Err() == nil
	if err != nil {
		raw.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: SSH handshake with %s: %w", t.Name, t.where(), ctx.Err())
		}
		return nil, handshakeError(t, err, hk, keys, timedOut)
	}
	if timedOut {
		// The handshake finished just as the time ran out and the socket
		// got closed under it.
		sc.Close()
		return nil, reachError(t, context.DeadlineExceeded)
	}
	_ = raw.SetDeadline(time.Time{})

	c := &Client{
		t:     t,
		conn:  ssh.NewClient(sc, chans, reqs),
		slots: make(chan struct{}, maxSessions),
		done:  make(chan struct{}),
	}
	go c.watch()
	go c.keepalive(keepalive)
	return c, nil
}

// DialTCP opens the TCP connection to t, inside t.Netns when set (also
// what backbone ssh-proxy gives OpenSSH as its ProxyCommand).
func DialTCP(ctx context.Context, t Target) (net.Conn, error) {
	var d net.Dialer
	if t.Netns == "" {
		return d.DialContext(ctx, "tcp", t.hostPort())
	}
	// Only the socket must be born in the namespace. Resolving a name is
	// done here first: the resolver may use threads of its own, which are
	// not in the namespace, so resolving inside it would be a lottery.
	addrs := []string{t.Address}
	if net.ParseIP(t.Address) == nil {
		ips, err := net.DefaultResolver.LookupHost(ctx, t.Address)
		if err != nil {
			return nil, err
		}
		addrs = ips
	}
	var conn net.Conn
	var last error
	for _, a := range addrs {
		nserr := namespace.Do(t.Netns, func() error {
			var err error
			conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort(a, strconv.Itoa(t.Port)))
			last = err
			return nil
		})
		if nserr != nil {
			return nil, &netnsError{netns: t.Netns, err: nserr}
		}
		if last == nil {
			return conn, nil
		}
	}
	return nil, last
}

// netnsError is a namespace that could not be entered to dial from.
type netnsError struct {
	netns string
	err   error
}

func (e *netnsError) Error() string { return e.err.Error() }

// reachError explains a failure to get a TCP connection (or an SSH
// greeting) from the router.
func reachError(t Target, err error) error {
	var nse *netnsError
	if errors.As(err, &nse) {
		return fmt.Errorf("%s: cannot dial %s from network namespace %q: %v: check netns in the inventory (ip netns list)", t.Name, t.where(), nse.netns, nse.err)
	}
	cause := err.Error()
	var oe *net.OpError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		cause = fmt.Sprintf("no answer within %s", t.Timeout)
	case errors.As(err, &oe) && oe.Err != nil:
		cause = oe.Err.Error() // drop "dial tcp ADDR:": the message names the address already
	}
	via := ""
	if t.Netns != "" {
		via = fmt.Sprintf(" from network namespace %q", t.Netns)
	}
	return fmt.Errorf("%s: cannot reach %s%s: %s: check the address and port in the inventory and that sshd runs there", t.Name, t.where(), via, cause)
}

// handshakeError explains why the SSH handshake or the login failed.
func handshakeError(t Target, err error, hk *hostKeys, keys *keySet, timedOut bool) error {
	if hkErr := hk.failure(); hkErr != nil {
		return hkErr
	}
	var ane *ssh.AlgorithmNegotiationError
	if errors.As(err, &ane) && ane.What == "host key" && hk.restricted() {
		// The router does not offer any key of the types on file for it:
		// to us that is a changed key, as to OpenSSH.
		return &HostKeyError{Node: t.Name, Host: t.hostPort(), KnownHosts: hk.path, Known: hk.known, Offered: ane.RequestedAlgorithms}
	}
	msg := err.Error()
	if strings.Contains(msg, "unable to authenticate") || strings.Contains(msg, "Too many authentication failures") {
		return fmt.Errorf("%s: user %s was refused by %s (keys tried: %s): add the public key to ~%s/.ssh/authorized_keys on %s, or set user or key in the inventory",
			t.Name, t.User, t.Address, keys.describe(), t.User, t.Name)
	}
	var ne net.Error
	if timedOut || (errors.As(err, &ne) && ne.Timeout()) {
		return reachError(t, context.DeadlineExceeded)
	}
	cause := strings.TrimPrefix(msg, "ssh: handshake failed: ")
	return fmt.Errorf("%s: SSH handshake with %s failed: %s: check that sshd (and not another service) runs there", t.Name, t.where(), cause)
}

// Name is the router's name.
func (c *Client) Name() string { return c.t.Name }

// Close closes the connection; commands still running are cut off.
func (c *Client) Close() error { return c.shutdown(nil) }

// fail closes the connection because of why, which later errors report.
func (c *Client) fail(why error) { c.shutdown(why) }

// shutdown closes the connection once; why is nil for Close. Whichever of
// Close, the keepalive and the router comes first says why.
func (c *Client) shutdown(why error) error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.lost = why
		c.mu.Unlock()
		close(c.done)
		err = c.conn.Close()
	})
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// lostReason is why the connection ended on its own, if it did.
func (c *Client) lostReason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// watch notices the connection ending (the router closed it, or a read
// failed) and records it, so that Run can tell why.
func (c *Client) watch() {
	err := c.conn.Wait()
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("the router closed the connection")
	}
	c.fail(err)
}

// keepalive asks the router for a reply every interval and closes the
// connection when it gets none within the next interval, as OpenSSH's
// ServerAliveInterval does.
func (c *Client) keepalive(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			// OpenSSH answers this unknown request with a failure: any
			// answer proves the router alive.
			_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		timer := time.NewTimer(every)
		select {
		case <-c.done:
			timer.Stop()
			return
		case err := <-reply:
			timer.Stop()
			if err != nil {
				c.fail(fmt.Errorf("keepalive failed: %w", err))
				return
			}
		case <-timer.C:
			c.fail(fmt.Errorf("no answer to a keepalive within %s", every))
			return
		}
	}
}

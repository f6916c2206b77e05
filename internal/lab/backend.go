package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backbone-net/backbone/internal/lab/features"
	"github.com/backbone-net/backbone/internal/lab/qemu"
	"github.com/backbone-net/backbone/internal/lab/uml"
	"github.com/backbone-net/backbone/internal/layout"
)

// Backends run a lab's routers on a kernel that has what they need.
const (
	// BackendNative: network namespaces of this machine's kernel.
	BackendNative = "native"
	// BackendKVM: the whole lab in a qemu VM with hardware virtualization.
	BackendKVM = "kvm"
	// BackendUML: each router in its own User-mode Linux kernel; CEs and
	// the underlay in namespaces of this machine.
	BackendUML = "uml"
	// BackendTCG: the whole lab in a qemu VM under software emulation.
	BackendTCG = "tcg"
)

// Backends are the backends in the order they are preferred.
var Backends = []string{BackendNative, BackendKVM, BackendUML, BackendTCG}

// Choice is the backend decided for this machine, remembered in the cache
// so that later labs skip the probes (KVM boot, UML boot check).
type Choice struct {
	Backend string `json:"backend"`
	// HostKernel is the kernel release the decision holds for.
	HostKernel string `json:"host_kernel"`
	// Missing are the host kernel's missing features.
	Missing []string `json:"missing,omitempty"`
	// Why says why the backends before it were not chosen.
	Why     []string  `json:"why,omitempty"`
	Decided time.Time `json:"decided"`
}

func choiceFile() string { return filepath.Join(layout.CacheDir, "backend.json") }

func hostKernel() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

// RememberedChoice returns the backend decided earlier for this host
// kernel, if any.
func RememberedChoice() (Choice, bool) {
	data, err := os.ReadFile(choiceFile())
	if err != nil {
		return Choice{}, false
	}
	var c Choice
	if json.Unmarshal(data, &c) != nil || c.HostKernel != hostKernel() || !slices.Contains(Backends, c.Backend) {
		return Choice{}, false
	}
	return c, true
}

func rememberChoice(c Choice) error {
	if err := os.MkdirAll(layout.CacheDir, 0o755); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(c, "", "  ")
	return os.WriteFile(choiceFile(), append(data, '\n'), 0o644)
}

// missingFeatures checks this kernel for what the modules need.
func missingFeatures(modules []string) []features.Feature {
	return features.Missing(features.Required(features.Check(modules), modules))
}

func featureNames(fs []features.Feature) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

// Choose picks the backend of a lab that needs modules: forced when
// given, native when this kernel has every feature, else the backend
// remembered for this machine, else the first that works of kvm (a guest
// really boots), uml (a cached kernel passed its boot check) and tcg. The
// decision is remembered.
func Choose(ctx context.Context, modules []string, forced string, progress Progress) (string, error) {
	missing := missingFeatures(modules)
	switch forced {
	case "":
	case BackendNative:
		if len(missing) > 0 {
			return "", fmt.Errorf("backend native: this kernel lacks %s; load the modules (modprobe %s) or choose another backend (--backend uml|kvm|tcg)",
				features.FormatMissing(missing), moduleList(missing))
		}
		return forced, nil
	case BackendUML:
		if _, err := uml.Load(layout.CacheDir); err != nil {
			return "", fmt.Errorf("backend uml: %w", err)
		}
		return forced, nil
	case BackendKVM, BackendTCG:
		return forced, nil
	default:
		return "", fmt.Errorf("unknown backend %q: use one of %s", forced, strings.Join(Backends, ", "))
	}
	if len(missing) == 0 {
		return BackendNative, nil
	}
	if c, ok := RememberedChoice(); ok && c.Backend != BackendNative {
		// UML set up since software emulation was chosen: decide again.
		stale := (c.Backend == BackendUML) != (umlReady() == nil) && c.Backend != BackendKVM
		if !stale {
			progress("backend: %s (decided for this machine on %s; this kernel lacks %s)", c.Backend, c.Decided.Format("2006-01-02"), strings.Join(featureNames(missing), ", "))
			return c.Backend, nil
		}
	}
	c, err := Decide(ctx, missing, progress)
	if err != nil {
		return "", err
	}
	return c.Backend, nil
}

// Decide probes the backends in order for a kernel that lacks missing,
// and remembers the first that works.
func Decide(ctx context.Context, missing []features.Feature, progress Progress) (Choice, error) {
	c := Choice{HostKernel: hostKernel(), Missing: featureNames(missing), Decided: time.Now().UTC()}
	if len(missing) == 0 {
		c.Backend = BackendNative
		return c, rememberChoice(c)
	}
	c.Why = append(c.Why, "native: this kernel lacks "+strings.Join(c.Missing, ", "))
	progress("backend: this kernel lacks %s; probing KVM", strings.Join(c.Missing, ", "))
	dir, err := os.MkdirTemp(layout.CacheDir, "kvm-probe-")
	if err != nil {
		return c, err
	}
	kerr := qemu.ProbeKVM(ctx, qemu.Config{StateDir: dir, Progress: func(s string) { progress("kvm: %s", s) }})
	os.RemoveAll(dir)
	if kerr == nil {
		c.Backend = BackendKVM
		return c, rememberChoice(c)
	}
	c.Why = append(c.Why, "kvm: "+firstLine(kerr.Error()))
	if err := umlReady(); err != nil {
		c.Why = append(c.Why, "uml: "+firstLine(err.Error()))
		c.Backend = BackendTCG
	} else {
		c.Backend = BackendUML
	}
	progress("backend: %s (%s)", c.Backend, strings.Join(c.Why, "; "))
	return c, rememberChoice(c)
}

// umlReady reports why the UML backend cannot run (nil if it can).
func umlReady() error {
	k, err := uml.Load(layout.CacheDir)
	if err != nil {
		return err
	}
	if k.Checked.IsZero() {
		return errors.New("the cached UML kernel never passed its boot check: run scripts/setup")
	}
	return nil
}

func moduleList(fs []features.Feature) string {
	var ms []string
	for _, f := range fs {
		ms = append(ms, f.Module)
	}
	return strings.Join(ms, " ")
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// placement says where each node runs on a backend: every node in a
// namespace natively or in the VM; with UML, each router that needs kernel
// features (any module: MPLS at least) in its own UML kernel, and the CEs
// and the underlay, which need none this machine lacks, in namespaces here.
func placement(c *Config, backend string) []NodeState {
	var out []NodeState
	for _, n := range c.Nodes() {
		place := PlaceNetns
		switch backend {
		case BackendKVM, BackendTCG:
			place = PlaceVM
		case BackendUML:
			if h := c.Hosts[n]; n != Underlay && h != nil && len(h.Modules) > 0 {
				place = PlaceUML
			}
		}
		out = append(out, NodeState{Name: n, Role: c.Role(n), Place: place})
	}
	return out
}

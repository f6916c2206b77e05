package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/backbone-net/backbone/internal/lab/features"
	"github.com/backbone-net/backbone/internal/lab/guest"
	"github.com/backbone-net/backbone/internal/lab/namespace"
	"github.com/backbone-net/backbone/internal/lab/qemu"
	"github.com/backbone-net/backbone/internal/lab/uml"
	"github.com/backbone-net/backbone/internal/layout"
	"github.com/backbone-net/backbone/internal/node"
)

// KernelCheckCommand is the hidden subcommand that prints this kernel's
// features as JSON (run inside a guest by the UML boot check).
const KernelCheckCommand = "lab-kernel-check"

// SetupReport is what Setup found and decided.
type SetupReport struct {
	Choice Choice `json:"choice"`
	// UML is the UML kernel that passed its boot check (nil if none did).
	UML       *uml.Kernel `json:"uml,omitempty"`
	UMLErrors []string    `json:"uml_errors,omitempty"`
	// QemuKernel is the kernel the qemu backends boot.
	QemuKernel string `json:"qemu_kernel,omitempty"`
}

// Setup prepares this machine for labs once: on a kernel that lacks what
// the lab needs it fetches the qemu kernel and a UML build that boots here
// (checking each candidate by booting it and proving every kernel feature
// inside), probes KVM, and remembers the backend to use.
func Setup(ctx context.Context, progress Progress) (*SetupReport, error) {
	rep := &SetupReport{}
	missing := features.Missing(features.Check(features.Modules()))
	if len(missing) == 0 {
		c, err := Decide(ctx, nil, progress)
		rep.Choice = c
		return rep, err
	}
	progress("setup: this kernel lacks %s", features.FormatMissing(missing))
	k, err := qemu.EnsureKernel(ctx, layout.CacheDir, func(s string) { progress("qemu: %s", s) })
	if err != nil {
		return rep, err
	}
	rep.QemuKernel = k.Version
	if uk, errs := EnsureUML(ctx, progress); uk != nil {
		rep.UML = uk
	} else {
		for _, e := range errs {
			rep.UMLErrors = append(rep.UMLErrors, e.Error())
		}
	}
	c, err := Decide(ctx, missing, progress)
	rep.Choice = c
	return rep, err
}

// EnsureUML returns a UML kernel that boots here: the cached one if it
// passed its check, else the first of uml.Suites that downloads, boots and
// passes the feature check inside (then cached). It returns why each
// candidate failed when none works.
func EnsureUML(ctx context.Context, progress Progress) (*uml.Kernel, []error) {
	if k, err := uml.Load(layout.CacheDir); err == nil && !k.Checked.IsZero() {
		progress("uml: %s from %s, checked %s", k.Package, k.Suite, k.Checked.Format(time.RFC3339))
		return &k, nil
	}
	var errs []error
	for _, suite := range uml.Suites {
		k, err := uml.Fetch(ctx, layout.CacheDir, suite, func(s string) { progress("%s", s) })
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", suite, err))
			continue
		}
		start := time.Now()
		if err := CheckUML(ctx, k); err != nil {
			progress("uml: %s from %s does not work here: %v", k.Package, suite, firstLine(err.Error()))
			errs = append(errs, fmt.Errorf("%s %s: %w", suite, k.Package, err))
			continue
		}
		k.Checked = time.Now().UTC()
		if err := uml.Save(layout.CacheDir, k); err != nil {
			return nil, append(errs, err)
		}
		progress("uml: %s from %s boots and has every feature (check took %s)", k.Package, suite, time.Since(start).Round(time.Millisecond))
		return &k, nil
	}
	return nil, errs
}

// CheckUML boots a throwaway guest of kernel k and proves every lab
// feature inside it (MPLS, VRF, ip6gre, VXLAN, ESP with the AEAD cipher),
// through the same init, agent and control network the lab uses.
func CheckUML(ctx context.Context, k uml.Kernel) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	name := fmt.Sprintf("umlcheck-%d", os.Getpid())
	dir := filepath.Join(layout.CacheDir, "uml", name)
	defer os.RemoveAll(dir)
	check := layout.Lab{Name: name, StateDir: dir}
	if err := check.InstallBinary(self); err != nil {
		return err
	}
	bin := check.Binary()
	ns := layout.NetnsPrefix(name) + "k"
	if err := namespace.EnsureDir(); err != nil {
		return err
	}
	if err := namespace.Create(ns); err != nil {
		return err
	}
	defer namespace.Delete(ns)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	m, err := uml.Start(ctx, uml.Spec{
		Name: "umlcheck", Dir: dir, Netns: ns, Kernel: k, MemoryMiB: 256, Binary: bin,
		Guest: guest.Config{Shares: []string{dir}, Modules: features.Modules()},
	})
	if err != nil {
		return err
	}
	defer m.Stop(context.Background())
	out, err := node.Output(ctx, m, bin, KernelCheckCommand)
	if err != nil {
		return err
	}
	var fs []features.Feature
	if err := json.Unmarshal(out, &fs); err != nil {
		return fmt.Errorf("kernel check in the guest: %w: %q", err, out)
	}
	if len(fs) == 0 {
		return errors.New("kernel check in the guest reported nothing")
	}
	if miss := features.Missing(fs); len(miss) > 0 {
		return fmt.Errorf("the guest kernel lacks %s", features.FormatMissing(miss))
	}
	return nil
}

// Package host renders what a router deployed to a real host needs, at
// the host's own paths: the network configuration of its stack
// (NetworkManager keyfiles or systemd-networkd units) for the loopback,
// VRFs, tunnels and customer interfaces; sysctl.d and modules-load.d
// files; FRR's frr.conf and daemons file; strongSwan's connections,
// secrets and charon settings; the firewall's opening for IKE and ESP on
// Red Hat systems. Everything persists across a reboot. The underlay
// interface is not touched: it is how the router is reached.
//
// Each File says what applies a change to it (Apply), so that deploy
// reloads exactly what changed and restarts nothing it can reload.
package host

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
	"github.com/backbone-net/backbone/internal/render/frr"
	"github.com/backbone-net/backbone/internal/render/linux"
	"github.com/backbone-net/backbone/internal/render/strongswan"
)

// What applies a change to a file.
const (
	ApplySysctl   = "sysctl"   // sysctl --load FILE
	ApplyModules  = "modules"  // modprobe each module
	ApplyNM       = "nm"       // nmcli connection load FILE, then up (its Device)
	ApplyNetwork  = "network"  // networkctl reload, then reconfigure its Device
	ApplyNetdev   = "netdev"   // the device is deleted, then networkctl reload (networkd does not change a device it made)
	ApplyFRR      = "frr"      // systemctl reload frr: frr-reload.py applies the difference
	ApplyDaemons  = "daemons"  // systemctl restart frr (the daemon set changed)
	ApplyCharon   = "charon"   // systemctl restart strongswan (charon's own settings)
	ApplySwanctl  = "swanctl"  // swanctl --load-all: changed connections only
	ApplyFirewall = "firewall" // firewall-cmd --reload, where firewalld runs
	ApplyGuard    = "guard"    // systemctl daemon-reload, enable and restart the guard unit
)

// File is one file of a deployed router.
type File struct {
	Path  string      `json:"path"`
	Data  []byte      `json:"-"`
	Mode  os.FileMode `json:"mode"`
	Owner string      `json:"owner"` // user:group
	Apply string      `json:"apply"`
	// Device is the network device a network file is about: the one to
	// bring up again when it changes.
	Device string `json:"device,omitempty"`
	// Secret: the file holds keys (the swanctl secrets, a private key).
	Secret bool `json:"secret,omitempty"`
	// Order is when the file's change is applied relative to the others:
	// modules before sysctls before devices (loopback, VRFs, tunnels, then
	// the interfaces in the VRFs) before FRR before strongSwan.
	Order int `json:"order"`
}

// applyOrder is the order of each kind of change.
var applyOrder = map[string]int{
	ApplyModules: 10, ApplySysctl: 20, ApplyGuard: 30, ApplyNM: 100, ApplyNetdev: 100, ApplyNetwork: 100,
	ApplyFirewall: 300, ApplyDaemons: 400, ApplyFRR: 410, ApplyCharon: 500, ApplySwanctl: 510,
}

// Paths of a host flavour.
type Paths struct {
	// Swanctl is swanctl's directory (conf.d, x509, private below it).
	Swanctl string
	// StrongswanD holds drop-ins of strongswan.conf.
	StrongswanD string
}

// PathsOf returns the strongSwan paths of an OS: Red Hat's packages keep
// them under /etc/strongswan.
func PathsOf(h *intent.Host) Paths {
	if h.RedHat() {
		return Paths{Swanctl: "/etc/strongswan/swanctl", StrongswanD: "/etc/strongswan/strongswan.d"}
	}
	return Paths{Swanctl: "/etc/swanctl", StrongswanD: "/etc/strongswan.d"}
}

// SecretsFile is where a host keeps swanctl's secrets.
func SecretsFile(h *intent.Host) string { return PathsOf(h).Swanctl + "/conf.d/backbone-secrets.conf" }

// Files of a router that are backbone's own, by where they live.
const (
	SysctlFile    = "/etc/sysctl.d/90-backbone.conf"
	ModulesFile   = "/etc/modules-load.d/backbone.conf"
	FRRConf       = "/etc/frr/frr.conf"
	FRRDaemons    = "/etc/frr/daemons"
	NMDir         = "/etc/NetworkManager/system-connections"
	NetworkdDir   = "/etc/systemd/network"
	FirewalldFile = "/etc/firewalld/services/backbone.xml"
	// GuardUnit installs the IPsec fail-closed guard at boot, before any
	// network configuration, and on each change.
	GuardUnit = "/etc/systemd/system/" + GuardService
	// GuardService is the guard's systemd unit.
	GuardService = "backbone-ipsec-guard.service"
	// FirewalldService is the firewalld service backbone's file defines.
	FirewalldService = "backbone"
)

// Render returns the files of router r, sorted by path. The router must
// have a host (plan.Router.Host).
func Render(p *plan.Plan, r *plan.Router, keys strongswan.Credentials) ([]File, error) {
	if r.Host == nil {
		return nil, fmt.Errorf("router %s has no host: add host: {os: ..., network: ...} to it in the intent", r.Name)
	}
	if r.Role == intent.RoleCE {
		return nil, fmt.Errorf("router %s is a CE: backbone does not deploy CEs", r.Name)
	}
	h := linux.Render(p, r)
	var out []File
	add := func(f File) {
		if f.Owner == "" {
			f.Owner = "root:root"
		}
		if f.Mode == 0 {
			f.Mode = 0o644
		}
		f.Order += applyOrder[f.Apply]
		out = append(out, f)
	}
	add(File{Path: SysctlFile, Data: sysctlConf(r, h), Apply: ApplySysctl})
	add(File{Path: ModulesFile, Data: modulesConf(r, h), Apply: ApplyModules})
	for i, d := range netDevices(p, r, h) {
		switch r.Host.Network {
		case intent.NetworkManager:
			add(File{Path: NMDir + "/bb-" + d.name + ".nmconnection", Data: keyfile(r, d), Mode: 0o600, Apply: ApplyNM, Device: d.name, Order: i})
		case intent.NetworkD:
			if d.kind != linux.KindPhysical {
				add(File{Path: NetworkdDir + "/50-bb-" + d.name + ".netdev", Data: netdev(r, d), Apply: ApplyNetdev, Device: d.name, Order: i})
			}
			add(File{Path: NetworkdDir + "/50-bb-" + d.name + ".network", Data: network(r, d), Apply: ApplyNetwork, Device: d.name, Order: i})
		default:
			return nil, fmt.Errorf("router %s: unknown network stack %q", r.Name, r.Host.Network)
		}
	}
	add(File{Path: FRRConf, Data: frr.RenderHost(p, r), Mode: 0o640, Owner: "frr:frr", Apply: ApplyFRR})
	add(File{Path: FRRDaemons, Data: daemons(p, r), Mode: 0o640, Owner: "frr:frr", Apply: ApplyDaemons})
	if strongswan.Needed(r) {
		sp := PathsOf(r.Host)
		add(File{Path: GuardUnit, Data: guardUnit(r, h), Apply: ApplyGuard})
		add(File{Path: sp.StrongswanD + "/backbone.conf", Data: charonConf(r), Apply: ApplyCharon})
		add(File{Path: sp.Swanctl + "/conf.d/backbone.conf", Data: strongswan.Connections(p, r), Apply: ApplySwanctl})
		add(File{Path: SecretsFile(r.Host), Data: strongswan.SecretsConf(p, r, keys), Mode: 0o600, Apply: ApplySwanctl, Secret: true})
		if p.Encryption.Auth == "pubkey" {
			cert, key := keys.RouterCert(r.Name)
			add(File{Path: sp.Swanctl + "/" + strongswan.CACertFile(), Data: keys.CACert(), Apply: ApplySwanctl})
			add(File{Path: sp.Swanctl + "/" + strongswan.CertFile(r.Name), Data: cert, Apply: ApplySwanctl})
			add(File{Path: sp.Swanctl + "/" + strongswan.KeyFile(r.Name), Data: key, Mode: 0o600, Apply: ApplySwanctl, Secret: true})
		}
		if r.Host.RedHat() {
			add(File{Path: FirewalldFile, Data: firewalld(p, r), Apply: ApplyFirewall})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func header(r *plan.Router, comment, what string) string {
	return fmt.Sprintf("%s %s for %s, generated by backbone. Do not edit: change the intent and deploy.\n", comment, what, r.Name)
}

func sysctlConf(r *plan.Router, h *linux.Host) []byte {
	var b strings.Builder
	b.WriteString(header(r, "#", "kernel settings"))
	b.WriteString("# MPLS input per tunnel is FRR's (\"mpls enable\"): the tunnels appear after this file is read.\n")
	for _, s := range h.Sysctls {
		if s.Device == "" {
			fmt.Fprintf(&b, "%s = %s\n", s.Key, s.Value)
		}
	}
	return []byte(b.String())
}

func modulesConf(r *plan.Router, h *linux.Host) []byte {
	var b strings.Builder
	b.WriteString(header(r, "#", "kernel modules"))
	for _, m := range h.Modules {
		b.WriteString(m + "\n")
	}
	return []byte(b.String())
}

// device is a network device backbone owns on a host, with everything
// its configuration says.
type device struct {
	linux.Device
	name      string
	kind      string
	addresses []netip.Prefix
	routes    []linux.Route
}

// netDevices are the devices of a host's network configuration, in
// creation order: the loopback dummy, VRFs, tunnels, customer interfaces.
// The underlay interface is left to the host.
func netDevices(p *plan.Plan, r *plan.Router, h *linux.Host) []*device {
	var out []*device
	byName := map[string]*device{}
	for _, d := range h.Devices {
		name, kind := d.Name, d.Kind
		if kind == linux.KindLoopback {
			name, kind = frr.HostLoopback, "dummy"
		}
		if d.Name == r.Underlay.Interface && d.Kind == linux.KindPhysical {
			continue
		}
		dev := &device{Device: d, name: name, kind: kind}
		out = append(out, dev)
		byName[d.Name] = dev
	}
	for _, a := range h.Addresses {
		if d := byName[a.Device]; d != nil {
			d.addresses = append(d.addresses, a.Prefix)
		}
	}
	for _, rt := range h.Routes {
		if rt.Type != linux.RouteUnreachable {
			continue // the underlay default is the host's
		}
		for _, d := range out {
			if d.kind == linux.KindVRF && d.Table == rt.Table {
				d.routes = append(d.routes, rt)
			}
		}
	}
	return out
}

// uuid is a stable UUID (RFC 4122 layout) for a connection: the same
// router and device always give the same one.
func uuid(router, dev string) string {
	s := sha256.Sum256([]byte("backbone/" + router + "/" + dev))
	s[6] = s[6]&0x0f | 0x50
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// nmTunnelMode is NetworkManager's ip-tunnel.mode number.
var nmTunnelMode = map[string]int{linux.KindGRE: 2, linux.KindIP6GRE: 8}

// keyfile renders a NetworkManager keyfile.
func keyfile(r *plan.Router, d *device) []byte {
	var b strings.Builder
	b.WriteString(header(r, "#", "NetworkManager connection "+d.name))
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("[connection]")
	w("id=%s", d.name)
	w("uuid=%s", uuid(r.Name, d.name))
	typ := map[string]string{"dummy": "dummy", linux.KindVRF: "vrf", linux.KindIP6GRE: "ip-tunnel", linux.KindGRE: "ip-tunnel", linux.KindVXLAN: "vxlan", linux.KindPhysical: "ethernet"}[d.kind]
	w("type=%s", typ)
	w("interface-name=%s", d.name)
	w("autoconnect=true")
	if d.Master != "" {
		w("master=%s", d.Master)
		w("slave-type=vrf")
	}
	w("")
	switch d.kind {
	case linux.KindVRF:
		w("[vrf]")
		w("table=%d", d.Table)
		w("")
	case linux.KindIP6GRE, linux.KindGRE:
		w("[ip-tunnel]")
		w("mode=%d", nmTunnelMode[d.kind])
		w("local=%s", d.Local)
		w("remote=%s", d.Remote)
		w("ttl=%d", d.TTL)
		w("mtu=%d", d.MTU)
		w("")
	case linux.KindVXLAN:
		w("[vxlan]")
		w("id=%d", d.VNI)
		w("local=%s", d.Local)
		w("remote=%s", d.Remote)
		w("destination-port=%d", d.Port)
		w("ttl=%d", d.TTL)
		w("")
		w("[ethernet]")
		w("mtu=%d", d.MTU)
		w("")
	case linux.KindPhysical:
		w("[ethernet]")
		w("mtu=%d", d.MTU)
		w("")
	}
	for _, fam := range []int{4, 6} {
		w("[ipv%d]", fam)
		var addrs []netip.Prefix
		for _, a := range d.addresses {
			if a.Addr().Is4() == (fam == 4) {
				addrs = append(addrs, a)
			}
		}
		switch {
		case len(addrs) == 0 && fam == 6 && d.kind == linux.KindVRF:
			// "disabled" sets disable_ipv6 on the VRF device, and the
			// kernel then drops every IPv6 packet the VRF delivers
			// locally (a VPN label popped into the VRF for the PE's own
			// address: ping vrf, BGP to a remote CE's link): IPv4 works,
			// IPv6 silently not. "ignore" leaves IPv6 on, unconfigured.
			w("method=ignore")
		case len(addrs) == 0:
			w("method=disabled")
		default:
			w("method=manual")
			for i, a := range addrs {
				w("address%d=%s", i+1, a)
			}
		}
		n := 0
		for _, rt := range d.routes {
			if rt.Dst.Addr().Is4() != (fam == 4) {
				continue
			}
			n++
			gw := "0.0.0.0"
			if fam == 6 {
				gw = "::"
			}
			w("route%d=%s,%s,%d", n, rt.Dst, gw, rt.Metric)
			w("route%d_options=table=%d,type=unreachable", n, rt.Table)
		}
		if fam == 6 {
			// OSPFv3 and BFD for IPv6 run on link-local addresses. A
			// tunnel has no MAC to derive one from (eui64 leaves it
			// without): NetworkManager makes a stable one instead.
			mode := "eui64"
			if d.kind != linux.KindPhysical && d.kind != linux.KindVXLAN {
				mode = "stable-privacy"
			}
			w("addr-gen-mode=%s", mode)
		}
		w("")
	}
	return []byte(strings.TrimRight(b.String(), "\n") + "\n")
}

// netdev renders a systemd-networkd .netdev (the device itself).
func netdev(r *plan.Router, d *device) []byte {
	var b strings.Builder
	b.WriteString(header(r, "#", "systemd-networkd device "+d.name))
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("[NetDev]")
	w("Name=%s", d.name)
	w("Kind=%s", d.kind)
	if d.MTU > 0 {
		w("MTUBytes=%d", d.MTU)
	}
	switch d.kind {
	case linux.KindVRF:
		w("")
		w("[VRF]")
		w("Table=%d", d.Table)
	case linux.KindIP6GRE, linux.KindGRE:
		w("")
		w("[Tunnel]")
		w("Local=%s", d.Local)
		w("Remote=%s", d.Remote)
		w("TTL=%d", d.TTL)
		if d.EncapLimitNone {
			w("EncapsulationLimit=none")
		}
		// Not bound to the underlay interface's .network: that file is
		// the host's.
		w("Independent=yes")
	case linux.KindVXLAN:
		w("")
		w("[VXLAN]")
		w("VNI=%d", d.VNI)
		w("Local=%s", d.Local)
		w("Remote=%s", d.Remote)
		w("DestinationPort=%d", d.Port)
		w("TTL=%d", d.TTL)
		w("Independent=yes")
	}
	return []byte(b.String())
}

// network renders a systemd-networkd .network (addresses, VRF, routes).
func network(r *plan.Router, d *device) []byte {
	var b strings.Builder
	b.WriteString(header(r, "#", "systemd-networkd network of "+d.name))
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("[Match]")
	w("Name=%s", d.name)
	w("")
	if d.kind == linux.KindPhysical && d.MTU > 0 {
		w("[Link]")
		w("MTUBytes=%d", d.MTU)
		w("")
	}
	w("[Network]")
	if d.Master != "" {
		w("VRF=%s", d.Master)
	}
	if d.kind == linux.KindVRF {
		w("LinkLocalAddressing=no")
	} else {
		// ospf6d runs only on interfaces with a link-local address, the
		// loopback dummy (passive) included.
		w("LinkLocalAddressing=ipv6")
	}
	w("IPv6AcceptRA=no")
	w("ConfigureWithoutCarrier=yes")
	for _, a := range d.addresses {
		w("Address=%s", a)
	}
	for _, rt := range d.routes {
		w("")
		w("[Route]")
		w("Type=unreachable")
		w("Destination=%s", rt.Dst)
		w("Table=%d", rt.Table)
		w("Metric=%d", rt.Metric)
	}
	return []byte(b.String())
}

// frrDaemons are the daemons a Debian or Red Hat daemons file lists, in
// its order.
var frrDaemons = []string{"bgpd", "ospfd", "ospf6d", "ripd", "ripngd", "isisd", "pimd", "pim6d", "ldpd", "nhrpd", "eigrpd", "babeld", "sharpd", "pbrd", "bfdd", "fabricd", "vrrpd", "pathd"}

// daemons renders FRR's daemons file: the packages' defaults with the
// daemons the router's frr.conf needs turned on (zebra and staticd always
// run).
func daemons(p *plan.Plan, r *plan.Router) []byte {
	on := map[string]bool{}
	for _, d := range frr.Daemons(p, r) {
		on[d] = true
	}
	var b strings.Builder
	b.WriteString(header(r, "#", "FRR daemons"))
	for _, d := range frrDaemons {
		fmt.Fprintf(&b, "%s=%s\n", d, map[bool]string{true: "yes", false: "no"}[on[d]])
	}
	b.WriteString("vtysh_enable=yes\n")
	for _, o := range []struct{ d, addr string }{
		{"zebra", "127.0.0.1 -s 90000000"}, {"bgpd", "127.0.0.1"}, {"ospfd", "127.0.0.1"}, {"ospf6d", "::1"},
		{"ldpd", "127.0.0.1"}, {"staticd", "127.0.0.1"}, {"bfdd", "127.0.0.1"},
	} {
		fmt.Fprintf(&b, "%s_options=\"-A %s\"\n", o.d, o.addr)
	}
	b.WriteString("frr_profile=\"traditional\"\n")
	return []byte(b.String())
}

// guardUnit is a oneshot systemd unit that installs the router's IPsec
// guard policies (linux.Guard) before the network is configured at boot,
// so that no tunnel exists without them, and refreshes them when started
// again. Stopping it leaves them in place: the guard is removed by
// removing the unit's policies by hand, never as a side effect.
func guardUnit(r *plan.Router, h *linux.Host) []byte {
	var b strings.Builder
	b.WriteString(header(r, "#", "IPsec fail-closed guard"))
	b.WriteString(`# Tunnel packets to or from a peer's underlay address are dropped by the
# kernel unless one of charon's IPsec policies (a lower priority number)
# protects them: with charon stopped or crashed nothing leaves in clear.
[Unit]
Description=backbone IPsec fail-closed guard (XFRM block policies)
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target strongswan.service strongswan-starter.service frr.service
After=systemd-modules-load.service

[Service]
Type=oneshot
RemainAfterExit=yes
`)
	// Replace the set: guards of links that no longer exist go, then the
	// current ones are added ("update" creates or refreshes).
	fmt.Fprintf(&b, "ExecStart=/usr/sbin/ip xfrm policy deleteall action block priority %d\n", linux.GuardPriority)
	for _, g := range h.Guards {
		fmt.Fprintf(&b, "ExecStart=/usr/sbin/%s\n", strings.Join(g.Argv(), " "))
	}
	b.WriteString("\n[Install]\nWantedBy=sysinit.target\n")
	return []byte(b.String())
}

// charonConf is a strongswan.conf drop-in: charon's settings for the
// backbone on top of the package's.
func charonConf(r *plan.Router) []byte {
	var b strings.Builder
	b.WriteString(header(r, "#", "strongSwan settings"))
	b.WriteString(`charon {
    # Routes are FRR's business; policies alone steer ESP.
    install_routes = no
    install_virtual_ip = no
    plugins {
        # bypass-lan installs PASS policies for every local subnet: two
        # PEs sharing an underlay subnet would talk in clear.
        bypass-lan {
            load = no
        }
        kernel-netlink {
            # A trap hit while no charon answers leaves a larval SA that
            # blocks renegotiation for its lifetime (kernel default 165 s).
            xfrm_acq_expires = 10
        }
    }
}
`)
	return []byte(b.String())
}

// firewalld renders a firewalld service that opens IKE and ESP, and what
// crosses inside ESP (GRE, VXLAN): the apply step adds it to the zone of
// the underlay interface.
func firewalld(p *plan.Plan, r *plan.Router) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- firewalld service for %s, generated by backbone. Do not edit: change the intent and deploy. -->\n<service>\n", r.Name)
	b.WriteString("  <short>backbone</short>\n  <description>IKE and ESP between backbone routers, and the tunnels inside ESP</description>\n")
	b.WriteString("  <port protocol=\"udp\" port=\"500\"/>\n")
	if p.Encryption.UDPEncap {
		b.WriteString("  <port protocol=\"udp\" port=\"4500\"/>\n")
	}
	b.WriteString("  <protocol value=\"esp\"/>\n")
	gre, vxlan := false, false
	for _, i := range r.Interfaces {
		if i.Encap == intent.EncapVXLAN {
			vxlan = true
		} else {
			gre = true
		}
	}
	if gre {
		b.WriteString("  <protocol value=\"gre\"/>\n")
	}
	if vxlan {
		fmt.Fprintf(&b, "  <port protocol=\"udp\" port=\"%d\"/>\n", linux.VXLANPort)
	}
	b.WriteString("</service>\n")
	return []byte(b.String())
}

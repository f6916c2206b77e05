package netbox

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

// Pull reads the backbone called name from NetBox and returns its intent:
// the objects tagged bb-<name>, as push wrote them (or as an operator
// edited them since). Every problem found is reported at once, naming the
// NetBox object.
func Pull(ctx context.Context, c *Client, name string) (*intent.Intent, error) {
	k := NewKinds(name)
	kinds := []*Kind{k.ConfigContext, k.VRF, k.VM, k.Device, k.Interface, k.DeviceInterface, k.IP, k.Tunnel, k.Termination, k.Prefix}
	live, err := listKinds(ctx, c, kinds)
	if err != nil {
		return nil, fmt.Errorf("netbox pull %s:\n%w", name, err)
	}
	var problems []string
	bad := func(kind *Kind, m map[string]any, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s %q (id %v, %s): %s", kind.Name, display(m), m["id"], objURL(m), fmt.Sprintf(format, args...)))
	}
	in := &intent.Intent{Name: name}

	// The backbone-wide sections.
	switch ccs := live[k.ConfigContext]; len(ccs) {
	case 0:
		return nil, fmt.Errorf("netbox pull %s: NetBox has no config context %q (tag %s): push the backbone first (backbone netbox push), or check the name", name, Tag(name), Tag(name))
	default:
		data, _ := ccs[0]["data"].(map[string]any)
		g, ok := data["backbone"]
		if !ok {
			bad(k.ConfigContext, ccs[0], `its data has no "backbone" key`)
			break
		}
		raw, _ := json.Marshal(g)
		var sec struct {
			ASN        uint32            `json:"asn"`
			Underlay   intent.Underlay   `json:"underlay"`
			Pools      intent.Pools      `json:"pools"`
			Encryption intent.Encryption `json:"encryption"`
			Protocols  intent.Protocols  `json:"protocols"`
		}
		if err := json.Unmarshal(raw, &sec); err != nil {
			bad(k.ConfigContext, ccs[0], "its backbone data does not read: %v", err)
		}
		in.ASN, in.Underlay, in.Pools, in.Encryption, in.Protocols = sec.ASN, sec.Underlay, sec.Pools, sec.Encryption, sec.Protocols
	}

	// Interfaces and addresses per router.
	// Routers are virtual machines (as push writes them) or devices: an
	// interface is known by its object type and id.
	ifaces := map[string]*ifaceInfo{} // by "type:id"
	byVM := map[string][]*ifaceInfo{}
	for _, kind := range []*Kind{k.Interface, k.DeviceInterface} {
		for _, m := range live[kind] {
			info := &ifaceInfo{m: m, vrf: nested(m, "vrf", "name")}
			ifaces[info.key()] = info
			vm := routerOf(m)
			byVM[vm] = append(byVM[vm], info)
		}
	}
	for _, m := range live[k.IP] {
		info := ifaces[fmt.Sprint(m["assigned_object_type"])+":"+fmt.Sprint(m["assigned_object_id"])]
		if m["assigned_object_type"] != ifaceType[true] && m["assigned_object_type"] != ifaceType[false] {
			bad(k.IP, m, "is not assigned to an interface")
			continue
		}
		if info == nil {
			bad(k.IP, m, "is assigned to an interface that is not the backbone's (tag %s)", Tag(name))
			continue
		}
		a, err := netip.ParsePrefix(fmt.Sprint(m["address"]))
		if err != nil {
			bad(k.IP, m, "address: %v", err)
			continue
		}
		info.addrs = append(info.addrs, a)
		info.roles = append(info.roles, choice(m["role"]))
	}
	cf := func(m map[string]any, key string) any {
		c, _ := m["custom_fields"].(map[string]any)
		return c[key]
	}
	num := func(v any) int {
		f, _ := v.(float64)
		return int(f)
	}
	str := func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}

	// Routers.
	vms := append(slices.Clone(live[k.VM]), live[k.Device]...)
	sort.SliceStable(vms, func(i, j int) bool { return num(cf(vms[i], "bb_order")) < num(cf(vms[j], "bb_order")) })
	ifName := map[string]string{} // "type:id" -> "vm/name" (for terminations)
	seen := map[string]bool{}
	for _, vm := range vms {
		r := intent.Router{Name: fmt.Sprint(vm["name"])}
		role := nested(vm, "role", "slug")
		r.Role = strings.TrimPrefix(role, "bb-")
		if !strings.HasPrefix(role, "bb-") {
			bad(k.VM, vm, "its role %q is not one of backbone's (bb-pe, bb-p, bb-ce)", role)
		}
		r.ASN = uint32(num(cf(vm, "bb_asn")))
		if p := nested(vm, "platform", "slug"); p != "" {
			r.Host = &intent.Host{OS: strings.TrimPrefix(p, "bb-"), Network: str(cf(vm, "bb_network"))}
		}
		var loopbacks []string
		if seen[r.Name] {
			bad(k.VM, vm, "a virtual machine and a device of this backbone are both called %s: keep one", r.Name)
		}
		seen[r.Name] = true
		for _, info := range byVM[r.Name] {
			ifName[info.key()] = r.Name + "/" + fmt.Sprint(info.m["name"])
			switch str(cf(info.m, "bb_kind")) {
			case "underlay":
				r.Underlay.Interface = fmt.Sprint(info.m["name"])
				for _, a := range info.addrs {
					if a.Addr().Is4() {
						r.Underlay.IPv4 = a.String()
					} else {
						r.Underlay.IPv6 = a.String()
					}
				}
			case "loopback":
				for i, a := range info.addrs {
					if info.roles[i] != "loopback" {
						continue
					}
					loopbacks = append(loopbacks, a.String())
					if a.Addr().Is4() {
						if r.Loopback.IPv4 != "" {
							bad(k.Interface, info.m, "two IPv4 loopback addresses (%s and %s): keep one", r.Loopback.IPv4, a.Addr())
						}
						r.Loopback.IPv4 = a.Addr().String()
					} else {
						if r.Loopback.IPv6 != "" {
							bad(k.Interface, info.m, "two IPv6 loopback addresses (%s and %s): keep one", r.Loopback.IPv6, a.Addr())
						}
						r.Loopback.IPv6 = a.Addr().String()
					}
				}
			}
		}
		if r.Role != intent.RoleCE && len(loopbacks) == 0 {
			bad(k.VM, vm, "has no loopback address (an IP address with role loopback on its interface loopback0)")
		}
		if r.Underlay.Interface == "eth0" {
			r.Underlay.Interface = "" // the default
		}
		in.Routers = append(in.Routers, r)
	}

	// VRFs.
	vrfs := live[k.VRF]
	sort.SliceStable(vrfs, func(i, j int) bool { return num(cf(vrfs[i], "bb_order")) < num(cf(vrfs[j], "bb_order")) })
	for _, m := range vrfs {
		v := intent.VRF{Name: fmt.Sprint(m["name"]), ID: num(cf(m, "bb_id")), Table: num(cf(m, "bb_table")), RD: str(m["rd"])}
		v.Import, v.Export = rtNames(m["import_targets"]), rtNames(m["export_targets"])
		if v.ID == 0 {
			bad(k.VRF, m, "custom field bb_id (the VRF id) is empty")
		}
		in.VRFs = append(in.VRFs, v)
	}

	// Links: tunnels, their terminations and the addresses on the ends.
	ends := map[string]map[string]string{} // tunnel name -> router -> interface id
	for _, m := range live[k.Termination] {
		tn := nested(m, "tunnel", "name")
		if ends[tn] == nil {
			ends[tn] = map[string]string{}
		}
		id := fmt.Sprint(m["termination_type"]) + ":" + fmt.Sprint(m["termination_id"])
		vm, _, _ := strings.Cut(ifName[id], "/")
		if vm == "" {
			bad(k.Termination, m, "ends on an interface that is not the backbone's")
			continue
		}
		ends[tn][vm] = id
	}
	tunnels := live[k.Tunnel]
	sort.SliceStable(tunnels, func(i, j int) bool { return num(cf(tunnels[i], "bb_order")) < num(cf(tunnels[j], "bb_order")) })
	for _, m := range tunnels {
		a, b, ok := strings.Cut(str(cf(m, "bb_between")), ",")
		if !ok {
			bad(k.Tunnel, m, "custom field bb_between (the two routers, \"a,b\") is not set")
			continue
		}
		l := intent.Link{Between: [2]string{a, b}, Encap: str(cf(m, "bb_encap")), Cost: num(cf(m, "bb_cost")),
			MTU: num(cf(m, "bb_mtu")), UnderlayMTU: num(cf(m, "bb_underlay_mtu")), Encryption: str(cf(m, "bb_encryption"))}
		if v, ok := cf(m, "bb_ldp").(bool); ok {
			l.LDP = &v
		}
		l.EncapLimit, _ = cf(m, "bb_encap_limit").(bool)
		l.Unnumbered, _ = cf(m, "bb_unnumbered").(bool)
		tn := fmt.Sprint(m["name"])
		if len(ends[tn]) != 2 {
			bad(k.Tunnel, m, "has %d terminations on backbone routers, a link needs 2", len(ends[tn]))
		} else if id := ends[tn][a]; id != "" {
			for _, p := range ifaces[id].addrs {
				if p.Addr().Is4() {
					l.IPv4 = p.Masked().String()
				} else {
					l.IPv6 = p.Masked().String()
				}
			}
		}
		in.Links = append(in.Links, l)
	}

	// Sites: the PEs' interfaces towards CEs, and the CEs' prefixes.
	type site struct {
		order int
		s     intent.Site
	}
	var sites []site
	for _, info := range ifaces {
		if str(cf(info.m, "bb_kind")) != "site" {
			continue
		}
		s := intent.Site{CE: str(cf(info.m, "bb_site_ce")), PE: routerOf(info.m), VRF: info.vrf, Routing: str(cf(info.m, "bb_routing"))}
		for _, p := range info.addrs {
			if p.Addr().Is4() {
				s.IPv4 = p.Masked().String()
			} else {
				s.IPv6 = p.Masked().String()
			}
		}
		sites = append(sites, site{num(cf(info.m, "bb_order")), s})
	}
	sort.SliceStable(sites, func(i, j int) bool { return sites[i].order < sites[j].order })
	prefixes := live[k.Prefix]
	sort.SliceStable(prefixes, func(i, j int) bool { return num(prefixes[i]["id"]) < num(prefixes[j]["id"]) })
	for i := range sites {
		for _, m := range prefixes {
			if str(cf(m, "bb_site_ce")) == sites[i].s.CE && nested(m, "vrf", "name") == sites[i].s.VRF {
				sites[i].s.Prefixes = append(sites[i].s.Prefixes, fmt.Sprint(m["prefix"]))
			}
		}
		in.Sites = append(in.Sites, sites[i].s)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("netbox pull %s: %d problem(s):\n%s", name, len(problems), strings.Join(problems, "\n"))
	}
	return in, nil
}

type ifaceInfo struct {
	m     map[string]any
	addrs []netip.Prefix
	vrf   string
	roles []string
}

// ifaceType is the NetBox object type of an interface of a virtual
// machine (true) or of a device (false).
var ifaceType = map[bool]string{true: "virtualization.vminterface", false: "dcim.interface"}

func (i *ifaceInfo) key() string {
	_, vm := i.m["virtual_machine"].(map[string]any)
	return ifaceType[vm] + ":" + fmt.Sprint(i.m["id"])
}

// routerOf is the name of the virtual machine or device an interface
// belongs to.
func routerOf(m map[string]any) string {
	if vm := nested(m, "virtual_machine", "name"); vm != "" {
		return vm
	}
	return nested(m, "device", "name")
}

// NoDevices refuses a push into a NetBox that holds the backbone's
// routers as devices: push writes virtual machines, and would add a
// second copy of each router.
func NoDevices(ctx context.Context, c *Client, name string) error {
	k := NewKinds(name)
	devs, err := listKind(ctx, c, k.Device)
	if err != nil || len(devs) == 0 {
		return err
	}
	m := devs[0]
	return fmt.Errorf("netbox push %s: NetBox holds the backbone's routers as devices (%d, e.g. device %q id %v, %s): push writes virtual machines and would add a second copy of each; keep the backbone in NetBox and read it with netbox pull or -f netbox://%s", name, len(devs), display(m), m["id"], objURL(m), name)
}

// PullSecrets reads the pre-shared keys of the plan's encrypted links from
// their IKE policies (written by push --with-secrets), by plan.LinkKey.
func PullSecrets(ctx context.Context, c *Client, p *plan.Plan) (map[string]string, error) {
	if p.Encryption.Auth != "psk" {
		return nil, fmt.Errorf("netbox pull %s: --with-secrets: the backbone authenticates with %s, not pre-shared keys", p.Name, p.Encryption.Auth)
	}
	k := NewKinds(p.Name)
	pols, err := listKind(ctx, c, k.IKEPolicy)
	if err != nil {
		return nil, err
	}
	byName := map[string]map[string]any{}
	for _, m := range pols {
		byName[fmt.Sprint(m["name"])] = m
	}
	keys := map[string]string{}
	var problems []string
	for _, pl := range p.Links {
		if !pl.Encrypted {
			continue
		}
		name := TunnelName(p.Name, pl.Name)
		m := byName[name]
		switch key, _ := m["preshared_key"].(string); {
		case m == nil:
			problems = append(problems, fmt.Sprintf("link %s: NetBox has no IKE policy %q (tag %s): run netbox push", pl.Name, name, Tag(p.Name)))
		case key == "":
			problems = append(problems, fmt.Sprintf("IKE policy %q (id %v, %s): preshared_key is empty: write the keys with netbox push --with-secrets, or set it", name, m["id"], objURL(m)))
		default:
			keys[plan.LinkKey(pl.Ends[0], pl.Ends[1])] = key
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("netbox pull %s --with-secrets: %d problem(s), no key copied:\n%s", p.Name, len(problems), strings.Join(problems, "\n"))
	}
	return keys, nil
}

func choice(v any) string {
	if m, ok := v.(map[string]any); ok {
		return fmt.Sprint(m["value"])
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func display(m map[string]any) string {
	for _, k := range []string{"display", "name", "address", "prefix"} {
		if v, ok := m[k]; ok && v != nil {
			return fmt.Sprint(v)
		}
	}
	return ""
}

func objURL(m map[string]any) string {
	if u, ok := m["url"].(string); ok {
		return u
	}
	return "no URL"
}

func rtNames(v any) []string {
	l, _ := v.([]any)
	out := []string{}
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, fmt.Sprint(m["name"]))
		}
	}
	sort.Strings(out)
	return out
}

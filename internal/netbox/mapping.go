package netbox

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/backbone-net/backbone/internal/intent"
	"github.com/backbone-net/backbone/internal/plan"
)

// The NetBox objects of a backbone (docs/netbox.md). Every object backbone
// writes carries the tag "backbone" and the backbone's own tag
// "bb-<name>", which is how it is read back (several backbones can share
// one NetBox). Knobs NetBox has no field for are custom fields whose names
// start with "bb_"; the backbone-wide sections of the intent (ASN,
// underlay, pools, encryption, protocols) are a config context assigned to
// the backbone's cluster.

// Tag is the backbone's own tag slug.
func Tag(name string) string { return "bb-" + name }

// TunnelName is the NetBox name of a link's tunnel, and of its IKE policy
// and IPsec profile: NetBox wants these names unique, so they carry the
// backbone's name ("default/pe101-pe201").
func TunnelName(backbone, link string) string { return backbone + "/" + link }

func byName(m map[string]any, _ *IDs) string { return fmt.Sprint(m["name"]) }
func bySlug(m map[string]any, _ *IDs) string { return fmt.Sprint(m["slug"]) }

// nested returns m[field]["name"] (a nested object's name).
func nested(m map[string]any, field, key string) string {
	if n, ok := m[field].(map[string]any); ok {
		return fmt.Sprint(n[key])
	}
	return ""
}

// tagged narrows a read to the backbone's tag and checks the answer.
func tagged(name string) (map[string][]string, func(map[string]any) bool) {
	tag := Tag(name)
	return map[string][]string{"tag": {tag}}, func(m map[string]any) bool {
		tags, _ := m["tags"].([]any)
		for _, t := range tags {
			if tm, ok := t.(map[string]any); (ok && tm["slug"] == tag) || t == tag {
				return true
			}
		}
		return false
	}
}

// Kinds are the object types of one backbone, in write order.
type Kinds struct {
	Tag, CustomField, ClusterType, Cluster, Role, Platform, ConfigContext,
	RIR, ASN, RouteTarget, VRF, VM, Interface, IP, VMPrimary, TunnelGroup,
	IKEProposal, IPsecProposal, IKEPolicy, IPsecPolicy, IPsecProfile, Tunnel,
	Termination, Prefix *Kind
	// Devices and their interfaces: pull reads routers that are dcim
	// devices too (push writes virtual machines).
	Device, DeviceInterface *Kind
}

// All lists the kinds in write order (dependencies first).
func (k *Kinds) All() []*Kind {
	return []*Kind{k.Tag, k.CustomField, k.ClusterType, k.Cluster, k.Role, k.Platform, k.ConfigContext,
		k.RIR, k.ASN, k.RouteTarget, k.VRF, k.VM, k.Interface, k.IP, k.VMPrimary, k.TunnelGroup,
		k.IKEProposal, k.IPsecProposal, k.IKEPolicy, k.IPsecPolicy, k.IPsecProfile, k.Tunnel, k.Termination, k.Prefix}
}

// NewKinds returns the kinds of the backbone called name.
func NewKinds(name string) *Kinds {
	filter, check := tagged(name)
	k := &Kinds{}
	k.Tag = &Kind{Name: "tag", Path: "/api/extras/tags/", Key: bySlug,
		Filter: map[string][]string{"slug": {"backbone", Tag(name)}},
		Check:  func(m map[string]any) bool { return m["slug"] == "backbone" || m["slug"] == Tag(name) }}
	k.CustomField = &Kind{Name: "custom field", Path: "/api/extras/custom-fields/", Key: byName,
		Filter: map[string][]string{"name__isw": {"bb_"}},
		Check:  func(m map[string]any) bool { return strings.HasPrefix(fmt.Sprint(m["name"]), "bb_") }}
	k.ClusterType = &Kind{Name: "cluster type", Path: "/api/virtualization/cluster-types/", Key: bySlug,
		Filter: map[string][]string{"slug": {"backbone"}}, Check: func(m map[string]any) bool { return m["slug"] == "backbone" }}
	k.Cluster = &Kind{Name: "cluster", Path: "/api/virtualization/clusters/", Key: byName, Filter: filter, Check: check}
	k.Role = &Kind{Name: "role", Path: "/api/dcim/device-roles/", Key: bySlug,
		Filter: map[string][]string{"slug__isw": {"bb-"}},
		Check:  func(m map[string]any) bool { return strings.HasPrefix(fmt.Sprint(m["slug"]), "bb-") }}
	k.Platform = &Kind{Name: "platform", Path: "/api/dcim/platforms/", Key: bySlug,
		Filter: map[string][]string{"slug__isw": {"bb-"}},
		Check:  func(m map[string]any) bool { return strings.HasPrefix(fmt.Sprint(m["slug"]), "bb-") }}
	k.ConfigContext = &Kind{Name: "config context", Path: "/api/extras/config-contexts/", Key: byName, Filter: filter, Check: check}
	k.RIR = &Kind{Name: "RIR", Path: "/api/ipam/rirs/", Key: bySlug,
		Filter: map[string][]string{"slug__isw": {"bb-"}},
		Check:  func(m map[string]any) bool { return strings.HasPrefix(fmt.Sprint(m["slug"]), "bb-") }}
	// The AS number is NetBox's (unique there, and maybe shared with other
	// backbones or the operator's own records): backbone makes sure it
	// exists and never changes or deletes it. Desired narrows the read to
	// the backbone's ASN.
	k.ASN = &Kind{Name: "ASN", Path: "/api/ipam/asns/", CreateOnly: true,
		Key: func(m map[string]any, _ *IDs) string { return fmt.Sprint(m["asn"]) }}
	// Route targets are unique in NetBox and shared between VPNs (and
	// backbones): like the ASN, backbone adopts existing ones and creates
	// the missing ones, never changing or deleting them. Desired narrows
	// the read to the intent's.
	k.RouteTarget = &Kind{Name: "route target", Path: "/api/ipam/route-targets/", Key: byName, CreateOnly: true}
	k.VRF = &Kind{Name: "VRF", Path: "/api/ipam/vrfs/", Key: byName, Filter: filter, Check: check}
	k.VM = &Kind{Name: "virtual machine", Path: "/api/virtualization/virtual-machines/", Key: byName, Filter: filter, Check: check}
	k.Interface = &Kind{Name: "VM interface", Path: "/api/virtualization/interfaces/", Filter: filter, Check: check,
		Key: func(m map[string]any, _ *IDs) string {
			return nested(m, "virtual_machine", "name") + "/" + fmt.Sprint(m["name"])
		}}
	k.IP = &Kind{Name: "IP address", Path: "/api/ipam/ip-addresses/", Filter: filter, Check: check,
		Key: func(m map[string]any, _ *IDs) string {
			return fmt.Sprint(m["address"]) + "|" + nested(m, "vrf", "name")
		}}
	k.VMPrimary = &Kind{Name: "virtual machine (primary IPs)", Path: k.VM.Path, Key: byName, Of: k.VM}
	k.TunnelGroup = &Kind{Name: "tunnel group", Path: "/api/vpn/tunnel-groups/", Key: byName, Filter: filter, Check: check}
	k.IKEProposal = &Kind{Name: "IKE proposal", Path: "/api/vpn/ike-proposals/", Key: byName, Filter: filter, Check: check}
	k.IPsecProposal = &Kind{Name: "IPsec proposal", Path: "/api/vpn/ipsec-proposals/", Key: byName, Filter: filter, Check: check}
	k.IKEPolicy = &Kind{Name: "IKE policy", Path: "/api/vpn/ike-policies/", Key: byName, Filter: filter, Check: check}
	k.IPsecPolicy = &Kind{Name: "IPsec policy", Path: "/api/vpn/ipsec-policies/", Key: byName, Filter: filter, Check: check}
	k.IPsecProfile = &Kind{Name: "IPsec profile", Path: "/api/vpn/ipsec-profiles/", Key: byName, Filter: filter, Check: check}
	k.Tunnel = &Kind{Name: "tunnel", Path: "/api/vpn/tunnels/", Key: byName, Filter: filter, Check: check}
	k.Termination = &Kind{Name: "tunnel termination", Path: "/api/vpn/tunnel-terminations/", Filter: filter, Check: check,
		Key: func(m map[string]any, ids *IDs) string {
			obj, _ := m["termination"].(map[string]any)
			return nested(m, "tunnel", "name") + "@" + routerOf(obj)
		}}
	k.Prefix = &Kind{Name: "prefix", Path: "/api/ipam/prefixes/", Filter: filter, Check: check,
		Key: func(m map[string]any, _ *IDs) string { return fmt.Sprint(m["prefix"]) + "|" + nested(m, "vrf", "name") }}
	k.Device = &Kind{Name: "device", Path: "/api/dcim/devices/", Key: byName, Filter: filter, Check: check}
	k.DeviceInterface = &Kind{Name: "interface", Path: "/api/dcim/interfaces/", Filter: filter, Check: check,
		Key: func(m map[string]any, _ *IDs) string {
			return nested(m, "device", "name") + "/" + fmt.Sprint(m["name"])
		}}
	for _, owned := range []*Kind{k.Cluster, k.ConfigContext, k.VRF, k.VM, k.Interface, k.IP, k.TunnelGroup,
		k.IKEProposal, k.IPsecProposal, k.IKEPolicy, k.IPsecPolicy, k.IPsecProfile, k.Tunnel, k.Termination, k.Prefix} {
		owned.Owned = true
	}
	return k
}

// customFields are the custom fields backbone creates: name, type, the
// object types they apply to, and what they hold.
var customFields = []struct {
	name, typ, label, desc string
	on                     []string
}{
	{"bb_order", "integer", "Backbone order", "position in the intent's list", []string{"virtualization.virtualmachine", "dcim.device", "vpn.tunnel", "ipam.vrf", "virtualization.vminterface", "dcim.interface", "ipam.prefix"}},
	{"bb_asn", "integer", "Backbone CE ASN", "a CE's AS number", routers},
	{"bb_network", "text", "Backbone network stack", "networkmanager or networkd", routers},
	{"bb_kind", "text", "Backbone interface kind", "underlay, loopback, link or site", interfaces},
	{"bb_site_ce", "text", "Backbone site CE", "the CE of this customer site", append(slices.Clone(interfaces), "ipam.prefix")},
	{"bb_routing", "text", "Backbone PE-CE routing", "ebgp or static", interfaces},
	{"bb_between", "text", "Backbone link ends", "the link's two routers, a,b in intent order", []string{"vpn.tunnel"}},
	{"bb_encap", "text", "Backbone encapsulation", "gre (ip6gre or gre) or vxlan", []string{"vpn.tunnel"}},
	{"bb_cost", "integer", "Backbone OSPF cost", "empty: the backbone's default", []string{"vpn.tunnel"}},
	{"bb_mtu", "integer", "Backbone tunnel MTU", "tunnel MTU override (empty: planned)", []string{"vpn.tunnel"}},
	{"bb_underlay_mtu", "integer", "Backbone underlay MTU", "this path's underlay MTU (empty: the backbone's)", []string{"vpn.tunnel"}},
	{"bb_ldp", "boolean", "Backbone LDP", "LDP on this link (empty: the backbone's default)", []string{"vpn.tunnel"}},
	{"bb_encryption", "text", "Backbone encryption", "none to leave this link in clear (empty: the backbone's)", []string{"vpn.tunnel"}},
	{"bb_encap_limit", "boolean", "Backbone encap limit", "keep ip6gre's encapsulation-limit option", []string{"vpn.tunnel"}},
	{"bb_unnumbered", "boolean", "Backbone unnumbered", "an unnumbered link", []string{"vpn.tunnel"}},
	{"bb_id", "integer", "Backbone VRF id", "RD and kernel table derive from it", []string{"ipam.vrf"}},
	{"bb_table", "integer", "Backbone VRF table", "kernel table override", []string{"ipam.vrf"}},
	{"bb_proposal", "text", "Backbone strongSwan proposal", "the exact proposal (NetBox has no chacha20poly1305)", []string{"vpn.ikepolicy", "vpn.ipsecpolicy"}},
}

// Routers are virtual machines (push) or devices (pull reads both).
var (
	routers    = []string{"virtualization.virtualmachine", "dcim.device"}
	interfaces = []string{"virtualization.vminterface", "dcim.interface"}
)

// Secrets gives the pre-shared key of a link (by plan.LinkKey).
type Secrets interface {
	PSK(link string) string
}

// Options are the choices of a push.
type Options struct {
	// Secrets, when set, writes each link's pre-shared key into its IKE
	// policy (NetBox keeps it in clear text). Nil: keys stay out of NetBox.
	Secrets Secrets
}

// Desired is what NetBox should hold for a backbone: the intent's own
// values, and the addresses its plan allocated (so that they stay pinned).
func Desired(in *intent.Intent, p *plan.Plan, opts Options) ([]Object, *Kinds) {
	k := NewKinds(in.Name)
	tags := []map[string]any{{"slug": "backbone"}, {"slug": Tag(in.Name)}}
	var out []Object
	add := func(kind *Kind, key string, f map[string]any) {
		switch kind {
		case k.Tag, k.CustomField, k.ClusterType, k.Role, k.Platform, k.RIR:
		case k.ASN, k.RouteTarget: // shared: created with the common tag only
			f["tags"] = tags[:1]
		case k.ConfigContext:
			f["tags"] = []string{"backbone", Tag(in.Name)} // slugs here, nested objects elsewhere
		default:
			f["tags"] = tags
		}
		out = append(out, Object{Kind: kind, Key: key, Fields: f})
	}
	add(k.Tag, "backbone", map[string]any{"name": "backbone", "slug": "backbone", "color": "2f6a31", "description": "written by backbone"})
	add(k.Tag, Tag(in.Name), map[string]any{"name": Tag(in.Name), "slug": Tag(in.Name), "color": "2f6a31", "description": "backbone " + in.Name})
	for _, cf := range customFields {
		add(k.CustomField, cf.name, map[string]any{"name": cf.name, "type": cf.typ, "label": cf.label, "description": "backbone: " + cf.desc, "object_types": cf.on})
	}
	add(k.ClusterType, "backbone", map[string]any{"name": "backbone", "slug": "backbone"})
	add(k.Cluster, in.Name, map[string]any{"name": in.Name, "type": Ref{k.ClusterType, "backbone"}, "status": "active"})
	for _, role := range []string{intent.RolePE, intent.RoleP, intent.RoleCE} {
		add(k.Role, "bb-"+role, map[string]any{"name": "backbone " + strings.ToUpper(role), "slug": "bb-" + role, "vm_role": true, "color": "2f6a31"})
	}
	oses := map[string]bool{}
	for _, r := range in.Routers {
		if r.Host != nil && !oses[r.Host.OS] {
			oses[r.Host.OS] = true
			add(k.Platform, "bb-"+r.Host.OS, map[string]any{"name": "backbone " + r.Host.OS, "slug": "bb-" + r.Host.OS})
		}
	}
	add(k.ConfigContext, Tag(in.Name), map[string]any{
		"name": Tag(in.Name), "weight": 1000, "clusters": Refs{{k.Cluster, in.Name}},
		"description": "backbone " + in.Name + ": the backbone-wide part of its intent",
		"data":        map[string]any{"backbone": global(in)},
	})
	// The AS number, under a RIR of backbone's.
	rir := map[bool]string{true: "bb-private", false: "bb-public"}[privateASN(in.ASN)]
	add(k.RIR, rir, map[string]any{"name": "backbone " + strings.TrimPrefix(rir, "bb-") + " ASNs", "slug": rir, "is_private": rir == "bb-private"})
	asn := fmt.Sprint(in.ASN)
	k.ASN.Filter = map[string][]string{"asn": {asn}}
	k.ASN.Check = func(m map[string]any) bool { return fmt.Sprint(m["asn"]) == asn }
	add(k.ASN, asn, map[string]any{"asn": in.ASN, "rir": Ref{k.RIR, rir}, "description": "backbone " + in.Name})
	// Route targets and VRFs.
	rts := map[string]bool{}
	for _, v := range in.VRFs {
		for _, rt := range append(slices.Clone(v.Import), v.Export...) {
			if !rts[rt] {
				rts[rt] = true
				add(k.RouteTarget, rt, map[string]any{"name": rt, "description": "backbone " + in.Name})
			}
		}
	}
	k.RouteTarget.Filter = map[string][]string{"name": slices.Sorted(maps.Keys(rts))}
	k.RouteTarget.Check = func(m map[string]any) bool { return rts[fmt.Sprint(m["name"])] }
	for i, v := range in.VRFs {
		f := map[string]any{"name": v.Name, "enforce_unique": false,
			"import_targets": refs(k.RouteTarget, v.Import), "export_targets": refs(k.RouteTarget, v.Export),
			"custom_fields": map[string]any{"bb_id": v.ID, "bb_table": orNil(v.Table), "bb_order": i}}
		if v.RD != "" && v.RD != "auto" {
			f["rd"] = v.RD
		}
		add(k.VRF, v.Name, f)
	}
	// Routers, their interfaces and addresses.
	for i, r := range in.Routers {
		pr := p.Router(r.Name)
		cf := map[string]any{"bb_order": i, "bb_asn": orNil(int(r.ASN)), "bb_network": nil}
		f := map[string]any{"name": r.Name, "cluster": Ref{k.Cluster, in.Name}, "role": Ref{k.Role, "bb-" + r.Role}, "status": "active"}
		if r.Host != nil {
			f["platform"] = Ref{k.Platform, "bb-" + r.Host.OS}
			cf["bb_network"] = r.Host.Network
		}
		f["custom_fields"] = cf
		add(k.VM, r.Name, f)
		if pr == nil || r.Role == intent.RoleCE {
			continue
		}
		iface := func(name string, kind string, mtu int, vrf string, extra map[string]any) {
			f := map[string]any{"name": name, "virtual_machine": Ref{k.VM, r.Name}, "enabled": true,
				"custom_fields": map[string]any{"bb_kind": kind}}
			if mtu > 0 {
				f["mtu"] = mtu
			}
			if vrf != "" {
				f["vrf"] = Ref{k.VRF, vrf}
			}
			for key, v := range extra {
				f["custom_fields"].(map[string]any)[key] = v
			}
			add(k.Interface, r.Name+"/"+name, f)
		}
		ip := func(ifname string, a netip.Prefix, vrf, role string) {
			if !a.IsValid() {
				return
			}
			f := map[string]any{"address": a.String(), "status": "active",
				"assigned_object_type": "virtualization.vminterface", "assigned_object_id": Ref{k.Interface, r.Name + "/" + ifname}}
			if vrf != "" {
				f["vrf"] = Ref{k.VRF, vrf}
			}
			if role != "" {
				f["role"] = role
			}
			add(k.IP, a.String()+"|"+vrf, f)
		}
		if u := pr.Underlay; u != nil {
			iface(u.Interface, "underlay", 0, "", nil)
			ip(u.Interface, u.IPv6, "", "")
			ip(u.Interface, u.IPv4, "", "")
			primary := map[string]any{"name": r.Name}
			if u.IPv6.IsValid() {
				primary["primary_ip6"] = Ref{k.IP, u.IPv6.String() + "|"}
			}
			if u.IPv4.IsValid() {
				primary["primary_ip4"] = Ref{k.IP, u.IPv4.String() + "|"}
			}
			out = append(out, Object{Kind: k.VMPrimary, Key: r.Name, Fields: primary})
		}
		iface("loopback0", "loopback", 0, "", nil)
		if pr.LoopbackV4.IsValid() {
			ip("loopback0", netip.PrefixFrom(pr.LoopbackV4, 32), "", "loopback")
		}
		if pr.LoopbackV6.IsValid() {
			ip("loopback0", netip.PrefixFrom(pr.LoopbackV6, 128), "", "loopback")
		}
		for _, pi := range pr.Interfaces {
			iface(pi.Name, "link", pi.MTU, "", nil)
			ip(pi.Name, pi.IPv4, "", "")
			ip(pi.Name, pi.IPv6, "", "")
		}
		for _, a := range pr.Attachments {
			s := p.Sites[a.Site]
			in := in.Sites[a.Site]
			iface(a.Interface, "site", s.MTU, a.VRF, map[string]any{"bb_site_ce": s.CE, "bb_routing": in.Routing, "bb_order": a.Site})
			ip(a.Interface, s.PEIPv4, a.VRF, "")
			ip(a.Interface, s.PEIPv6, a.VRF, "")
		}
	}
	// Links as tunnels, the encrypted ones with an IPsec profile each (the
	// pre-shared key is per link, and NetBox keeps it in the IKE policy).
	add(k.TunnelGroup, in.Name, map[string]any{"name": in.Name, "slug": Tag(in.Name)})
	ipsec := ipsecObjects(in, p, k, opts, add)
	for i, l := range in.Links {
		pl := p.Links[i]
		// NetBox's nearest choice (it has no ip6gre and no VXLAN);
		// bb_encap says which it is.
		encap := map[string]string{intent.EncapGRE: "gre", intent.EncapVXLAN: "ip-ip"}[l.Encap]
		if pl.Encrypted {
			encap = "ipsec-" + p.Encryption.Mode
		}
		tn := TunnelName(in.Name, pl.Name)
		add(k.Tunnel, tn, map[string]any{"name": tn, "status": "active", "group": Ref{k.TunnelGroup, in.Name},
			"encapsulation": encap, "ipsec_profile": ipsec[tn], "custom_fields": map[string]any{
				"bb_order": i, "bb_between": l.Between[0] + "," + l.Between[1], "bb_encap": l.Encap,
				"bb_cost": orNil(l.Cost), "bb_mtu": orNil(l.MTU), "bb_underlay_mtu": orNil(l.UnderlayMTU),
				"bb_ldp": boolPtr(l.LDP), "bb_encryption": orNilString(l.Encryption), "bb_encap_limit": l.EncapLimit, "bb_unnumbered": l.Unnumbered,
			}})
		for _, end := range pl.Ends {
			r := p.Router(end)
			var ifname string
			for _, pi := range r.Interfaces {
				if pi.Link == i {
					ifname = pi.Name
				}
			}
			f := map[string]any{"tunnel": Ref{k.Tunnel, tn}, "role": "peer",
				"termination_type": "virtualization.vminterface", "termination_id": Ref{k.Interface, end + "/" + ifname}}
			if u := r.Underlay; u != nil {
				if u.IPv6.IsValid() {
					f["outside_ip"] = Ref{k.IP, u.IPv6.String() + "|"}
				} else if u.IPv4.IsValid() {
					f["outside_ip"] = Ref{k.IP, u.IPv4.String() + "|"}
				}
			}
			add(k.Termination, tn+"@"+end, f)
		}
	}
	// The prefixes behind each site's CE.
	for _, s := range in.Sites {
		for _, pfx := range s.Prefixes {
			add(k.Prefix, pfx+"|"+s.VRF, map[string]any{"prefix": pfx, "vrf": Ref{k.VRF, s.VRF}, "status": "active",
				"custom_fields": map[string]any{"bb_site_ce": s.CE}})
		}
	}
	return out, k
}

// ipsecObjects adds the IKE and IPsec proposals, policies and the
// per-link profiles of the encrypted links, and returns each encrypted
// link's profile reference (nil for the others). Proposals NetBox cannot
// name (the default ChaCha20-Poly1305) get no proposal object; the
// policies' bb_proposal holds the strongSwan string in every case.
func ipsecObjects(in *intent.Intent, p *plan.Plan, k *Kinds, opts Options, add func(*Kind, string, map[string]any)) map[string]any {
	profiles := map[string]any{}
	var encrypted []*plan.Link
	for _, pl := range p.Links {
		profiles[TunnelName(in.Name, pl.Name)] = nil
		if pl.Encrypted {
			encrypted = append(encrypted, pl)
		}
	}
	if len(encrypted) == 0 {
		return profiles
	}
	method := map[string]string{"psk": "preshared-keys", "pubkey": "certificates"}[p.Encryption.Auth]
	ikeProps, espProps := Refs{}, Refs{}
	if props, ok := nbProposals(p.Encryption.IKE); ok && ikeExpressible(props) {
		for i, np := range props {
			name := fmt.Sprintf("%s/ike-%d", in.Name, i+1)
			add(k.IKEProposal, name, withChoices(map[string]any{"name": name, "authentication_method": method,
				"encryption_algorithm": np.Encryption, "group": np.Group, "description": strings.Split(p.Encryption.IKE, ",")[i]},
				"authentication_algorithm", np.Authentication))
			ikeProps = append(ikeProps, Ref{k.IKEProposal, name})
		}
	}
	pfs := 0
	if props, ok := nbProposals(p.Encryption.ESP); ok {
		for i, np := range props {
			name := fmt.Sprintf("%s/esp-%d", in.Name, i+1)
			add(k.IPsecProposal, name, withChoices(map[string]any{"name": name, "description": strings.Split(p.Encryption.ESP, ",")[i]},
				"encryption_algorithm", np.Encryption, "authentication_algorithm", np.Authentication))
			espProps = append(espProps, Ref{k.IPsecProposal, name})
			if i == 0 {
				pfs = np.Group
			}
		}
	}
	policy := in.Name + "/esp"
	add(k.IPsecPolicy, policy, withChoices(map[string]any{"name": policy, "proposals": espProps,
		"description": "ESP " + p.Encryption.ESP, "custom_fields": map[string]any{"bb_proposal": p.Encryption.ESP}}, "pfs_group", pfs))
	for _, pl := range encrypted {
		name := TunnelName(in.Name, pl.Name)
		f := map[string]any{"name": name, "version": 2, "proposals": ikeProps,
			"description": "IKE " + p.Encryption.IKE, "custom_fields": map[string]any{"bb_proposal": p.Encryption.IKE}}
		if opts.Secrets != nil && p.Encryption.Auth == "psk" {
			f["preshared_key"] = opts.Secrets.PSK(plan.LinkKey(pl.Ends[0], pl.Ends[1]))
		}
		add(k.IKEPolicy, name, f)
		add(k.IPsecProfile, name, map[string]any{"name": name, "mode": "esp",
			"ike_policy": Ref{k.IKEPolicy, name}, "ipsec_policy": Ref{k.IPsecPolicy, policy}})
		profiles[name] = Ref{k.IPsecProfile, name}
	}
	return profiles
}

// withChoices adds optional choice fields that have a value: NetBox
// refuses null for them ("may not be blank"), so an empty one is left out
// (and a value set earlier stays).
func withChoices(f map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		if v := kv[i+1]; v != "" && v != 0 {
			f[kv[i].(string)] = v
		}
	}
	return f
}

// ikeExpressible: NetBox's IKE proposal needs an encryption algorithm and
// a DH group.
func ikeExpressible(props []nbProposal) bool {
	for _, np := range props {
		if np.Encryption == "" || np.Group == 0 {
			return false
		}
	}
	return true
}

// privateASN: RFC 6996's private-use AS numbers (and the documentation
// ones of RFC 5398, which labs use too).
func privateASN(asn uint32) bool {
	return (asn >= 64512 && asn <= 65534) || asn >= 4200000000 || (asn >= 64496 && asn <= 64511) || (asn >= 65536 && asn <= 65551)
}

// global is the backbone-wide part of the intent, kept in a config
// context as the intent writes it.
func global(in *intent.Intent) map[string]any {
	return map[string]any{
		"asn": in.ASN, "underlay": in.Underlay, "pools": in.Pools,
		"encryption": in.Encryption, "protocols": in.Protocols,
	}
}

func refs(k *Kind, names []string) Refs {
	out := Refs{}
	for _, n := range names {
		out = append(out, Ref{k, n})
	}
	return out
}

func orNil(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

func orNilString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func boolPtr(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

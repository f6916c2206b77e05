package netbox

import (
	"fmt"
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
	RouteTarget, VRF, VM, Interface, IP, VMPrimary, TunnelGroup, Tunnel,
	Termination, Prefix *Kind
}

// All lists the kinds in write order (dependencies first).
func (k *Kinds) All() []*Kind {
	return []*Kind{k.Tag, k.CustomField, k.ClusterType, k.Cluster, k.Role, k.Platform, k.ConfigContext,
		k.RouteTarget, k.VRF, k.VM, k.Interface, k.IP, k.VMPrimary, k.TunnelGroup, k.Tunnel, k.Termination, k.Prefix}
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
	k.RouteTarget = &Kind{Name: "route target", Path: "/api/ipam/route-targets/", Key: byName, Filter: filter, Check: check}
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
	k.Tunnel = &Kind{Name: "tunnel", Path: "/api/vpn/tunnels/", Key: byName, Filter: filter, Check: check}
	k.Termination = &Kind{Name: "tunnel termination", Path: "/api/vpn/tunnel-terminations/", Filter: filter, Check: check,
		Key: func(m map[string]any, ids *IDs) string {
			obj, _ := m["termination"].(map[string]any)
			vm := ""
			if obj != nil {
				vm = nested(obj, "virtual_machine", "name")
			}
			return nested(m, "tunnel", "name") + "@" + vm
		}}
	k.Prefix = &Kind{Name: "prefix", Path: "/api/ipam/prefixes/", Filter: filter, Check: check,
		Key: func(m map[string]any, _ *IDs) string { return fmt.Sprint(m["prefix"]) + "|" + nested(m, "vrf", "name") }}
	for _, owned := range []*Kind{k.Cluster, k.ConfigContext, k.RouteTarget, k.VRF, k.VM, k.Interface, k.IP, k.TunnelGroup, k.Tunnel, k.Termination, k.Prefix} {
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
	{"bb_order", "integer", "Backbone order", "position in the intent's list", []string{"virtualization.virtualmachine", "vpn.tunnel", "ipam.vrf", "virtualization.vminterface", "ipam.prefix"}},
	{"bb_asn", "integer", "Backbone CE ASN", "a CE's AS number", []string{"virtualization.virtualmachine"}},
	{"bb_network", "text", "Backbone network stack", "networkmanager or networkd", []string{"virtualization.virtualmachine"}},
	{"bb_kind", "text", "Backbone interface kind", "underlay, loopback, link or site", []string{"virtualization.vminterface"}},
	{"bb_site_ce", "text", "Backbone site CE", "the CE of this customer site", []string{"virtualization.vminterface", "ipam.prefix"}},
	{"bb_routing", "text", "Backbone PE-CE routing", "ebgp or static", []string{"virtualization.vminterface"}},
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
}

// Desired is what NetBox should hold for a backbone: the intent's own
// values, and the addresses its plan allocated (so that they stay pinned).
func Desired(in *intent.Intent, p *plan.Plan) ([]Object, *Kinds) {
	k := NewKinds(in.Name)
	tags := []map[string]any{{"slug": "backbone"}, {"slug": Tag(in.Name)}}
	var out []Object
	add := func(kind *Kind, key string, f map[string]any) {
		switch kind {
		case k.Tag, k.CustomField, k.ClusterType, k.Role, k.Platform:
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
	// Route targets and VRFs.
	rts := map[string]bool{}
	for _, v := range in.VRFs {
		for _, rt := range append(slices.Clone(v.Import), v.Export...) {
			if !rts[rt] {
				rts[rt] = true
				add(k.RouteTarget, rt, map[string]any{"name": rt})
			}
		}
	}
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
	// Links as tunnels.
	add(k.TunnelGroup, in.Name, map[string]any{"name": in.Name, "slug": Tag(in.Name)})
	for i, l := range in.Links {
		pl := p.Links[i]
		// NetBox's nearest choice (it has no ip6gre and no VXLAN);
		// bb_encap says which it is.
		encap := map[string]string{intent.EncapGRE: "gre", intent.EncapVXLAN: "ip-ip"}[l.Encap]
		if pl.Encrypted {
			encap = "ipsec-" + p.Encryption.Mode
		}
		add(k.Tunnel, pl.Name, map[string]any{"name": pl.Name, "status": "active", "group": Ref{k.TunnelGroup, in.Name},
			"encapsulation": encap, "custom_fields": map[string]any{
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
			f := map[string]any{"tunnel": Ref{k.Tunnel, pl.Name}, "role": "peer",
				"termination_type": "virtualization.vminterface", "termination_id": Ref{k.Interface, end + "/" + ifname}}
			if u := r.Underlay; u != nil {
				if u.IPv6.IsValid() {
					f["outside_ip"] = Ref{k.IP, u.IPv6.String() + "|"}
				} else if u.IPv4.IsValid() {
					f["outside_ip"] = Ref{k.IP, u.IPv4.String() + "|"}
				}
			}
			add(k.Termination, pl.Name+"@"+end, f)
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

// Package intent is the model users write: what the backbone should be.
// Load parses YAML strictly, Defaults fills what users may omit, and
// Validate reports every problem at once with its location and a fix hint.
package intent

// Intent describes one backbone.
type Intent struct {
	// Name names the backbone; it names the lab and the runtime paths.
	Name       string     `yaml:"name" json:"name"`
	ASN        uint32     `yaml:"asn" json:"asn"`
	Underlay   Underlay   `yaml:"underlay" json:"underlay"`
	Pools      Pools      `yaml:"pools" json:"pools"`
	Encryption Encryption `yaml:"encryption" json:"encryption"`
	Protocols  Protocols  `yaml:"protocols" json:"protocols"`
	Routers    []Router   `yaml:"routers" json:"routers"`
	Links      []Link     `yaml:"links" json:"links"`
	VRFs       []VRF      `yaml:"vrfs" json:"vrfs"`
	Sites      []Site     `yaml:"sites" json:"sites"`
}

// Underlay is the network the backbone's tunnels ride on (the internet or a
// provider's transport between cloud VMs).
type Underlay struct {
	// MTU of the underlay path between PEs, in bytes (default 1500).
	MTU int `yaml:"mtu" json:"mtu"`
}

// Pools are the address ranges the plan allocates from.
type Pools struct {
	LoopbackV4 string `yaml:"loopback_v4" json:"loopback_v4"`
	LoopbackV6 string `yaml:"loopback_v6" json:"loopback_v6"`
	// LinkV4 is carved into /31 networks, one per link.
	LinkV4 string `yaml:"link_v4" json:"link_v4"`
	// LinkV6 is carved into /127 networks, one per link.
	LinkV6 string `yaml:"link_v6" json:"link_v6"`
}

// Encryption protects every backbone link unless a link says otherwise.
type Encryption struct {
	// Type is "ipsec" (default) or "none".
	Type string `yaml:"type" json:"type"`
	// Mode is "transport" (default) or "tunnel" (40 bytes more per packet).
	Mode string `yaml:"mode" json:"mode"`
	// IKE and ESP are strongSwan proposal strings.
	IKE string `yaml:"ike" json:"ike"`
	ESP string `yaml:"esp" json:"esp"`
	// Auth is "psk" (default; secrets generated and kept outside the intent)
	// or "pubkey" (a generated CA and per-router certificates).
	Auth string `yaml:"auth" json:"auth"`
	// UDPEncap forces ESP-in-UDP (port 4500): 8 bytes more, fixed ports.
	UDPEncap bool `yaml:"udp_encap" json:"udp_encap"`
	// RekeyTime is the IKE SA rekey interval (strongSwan duration, e.g. "4h").
	RekeyTime string `yaml:"rekey_time" json:"rekey_time"`
}

// Protocols are the control-plane knobs.
type Protocols struct {
	OSPF OSPF `yaml:"ospf" json:"ospf"`
	LDP  LDP  `yaml:"ldp" json:"ldp"`
	BGP  BGP  `yaml:"bgp" json:"bgp"`
	BFD  BFD  `yaml:"bfd" json:"bfd"`
	MPLS MPLS `yaml:"mpls" json:"mpls"`
}

// OSPF applies to OSPFv2 and OSPFv3 alike.
type OSPF struct {
	Area          string `yaml:"area" json:"area"`
	HelloInterval int    `yaml:"hello_interval" json:"hello_interval"`
	DeadInterval  int    `yaml:"dead_interval" json:"dead_interval"`
	// RetransmitInterval is how long an unacknowledged OSPF packet (a
	// database description, an LSA) waits before it is sent again, in
	// seconds (FRR's default: 5). A packet lost while a link comes up
	// delays its adjacency by this much.
	RetransmitInterval int `yaml:"retransmit_interval" json:"retransmit_interval"`
	// Cost is the default interface cost; links may override it.
	Cost int `yaml:"cost" json:"cost"`
	// GracePeriod is how long, in seconds, neighbours keep forwarding
	// through a router whose ospfd/ospf6d restarts gracefully (RFC 3623,
	// RFC 5187), and zebra keeps its routes (1-1800; default 120).
	GracePeriod int `yaml:"grace_period" json:"grace_period"`
}

// LDP is label distribution for IPv4 and IPv6.
type LDP struct {
	Enabled *bool `yaml:"enabled" json:"enabled"`
	// Sync enables LDP-IGP synchronization under router ospf.
	Sync *bool `yaml:"sync" json:"sync"`
	// PreferIPv4 sets "dual-stack transport-connection prefer ipv4" on every
	// router (it must match on both ends of a session).
	PreferIPv4 bool `yaml:"prefer_ipv4" json:"prefer_ipv4"`
	// HelloInterval and HoldTime are the link hello timers in seconds
	// (FRR's defaults: 5 and 15).
	HelloInterval int `yaml:"hello_interval" json:"hello_interval"`
	HoldTime      int `yaml:"hold_time" json:"hold_time"`
	// SyncWait is how long LDP waits, once a session is up, before it
	// tells the IGP that the link has its labels (LDP-IGP sync), in
	// seconds (FRR's default: 10). Until then OSPF keeps the link at
	// maximum cost.
	SyncWait int `yaml:"sync_wait" json:"sync_wait"`
	// SessionHoldtime is the LDP session's keepalive hold time in seconds
	// (FRR's default: 180; keepalives go every third of it). A session
	// the peer has closed while the path was broken (an IPsec outage)
	// stays half-open on this side until its next keepalive draws a
	// reset: a shorter hold time bounds that.
	SessionHoldtime int `yaml:"session_holdtime" json:"session_holdtime"`
}

// BGP carries the L3VPN routes.
type BGP struct {
	// RouteReflectors, when set, makes these PEs reflectors and every other
	// PE their client; otherwise the PEs form a full mesh.
	RouteReflectors []string `yaml:"route_reflectors" json:"route_reflectors,omitempty"`
	// ConnectRetry is the BGP connect-retry timer in seconds (FRR's default,
	// 120 s, dominates lab bring-up).
	ConnectRetry int `yaml:"connect_retry" json:"connect_retry"`
	Keepalive    int `yaml:"keepalive" json:"keepalive"`
	Hold         int `yaml:"hold" json:"hold"`
	// RestartTime is the BGP graceful restart time (RFC 4724) a router
	// announces: how long its peers keep its routes while its bgpd
	// restarts (1-4095 s; default 120). StalepathTime is how long a
	// restarted peer's stale routes are kept until its End-of-RIB
	// (1-4095 s; default 360).
	RestartTime   int `yaml:"restart_time" json:"restart_time"`
	StalepathTime int `yaml:"stalepath_time" json:"stalepath_time"`
}

// BFD timers for the IGP sessions.
type BFD struct {
	Enabled    *bool `yaml:"enabled" json:"enabled"`
	IntervalMS int   `yaml:"interval_ms" json:"interval_ms"`
	Multiplier int   `yaml:"multiplier" json:"multiplier"`
}

// MPLS is the label plan.
type MPLS struct {
	PlatformLabels int `yaml:"platform_labels" json:"platform_labels"`
	// LabelStack is the number of labels budgeted per packet in the MTU plan
	// (transport + VPN = 2).
	LabelStack int `yaml:"label_stack" json:"label_stack"`
}

// Role of a router.
const (
	RolePE = "pe"
	RoleP  = "p"
	RoleCE = "ce"
)

// Router is one Linux router (a VM, a host, or a lab namespace).
type Router struct {
	Name string `yaml:"name" json:"name"`
	Role string `yaml:"role" json:"role"`
	// Underlay addresses of the router's WAN interface, with prefix length.
	Underlay RouterUnderlay `yaml:"underlay" json:"underlay"`
	// Loopback pins loopback addresses; unset ones are allocated.
	Loopback Loopback `yaml:"loopback" json:"loopback"`
	// ASN of a CE (eBGP sites).
	ASN uint32 `yaml:"asn" json:"asn,omitempty"`
	// Host says what runs the router when it is deployed to a real host
	// (backbone deploy, lab up --bare); unset, the router is lab-only.
	Host *Host `yaml:"host" json:"host,omitempty"`
}

// Operating systems of deployed routers.
const (
	OSRocky9   = "rocky9"
	OSRHEL9    = "rhel9"
	OSDebian12 = "debian12"
	OSUbuntu24 = "ubuntu24"
)

// Network stacks of deployed routers.
const (
	NetworkManager = "networkmanager"
	NetworkD       = "networkd"
)

// Host is the system of a deployed router.
type Host struct {
	// OS: rocky9, rhel9, debian12 or ubuntu24. It fixes the paths of
	// strongSwan's configuration and the firewall.
	OS string `yaml:"os" json:"os"`
	// Network is the stack that holds the interfaces: networkmanager
	// (the default on rocky9 and rhel9) or networkd (the default on
	// debian12 and ubuntu24).
	Network string `yaml:"network" json:"network"`
}

// RedHat reports whether the OS is of the Red Hat family.
func (h *Host) RedHat() bool { return h.OS == OSRocky9 || h.OS == OSRHEL9 }

// RouterUnderlay is the router's WAN side.
type RouterUnderlay struct {
	Interface string `yaml:"interface" json:"interface"`
	IPv6      string `yaml:"ipv6" json:"ipv6"`
	IPv4      string `yaml:"ipv4" json:"ipv4"`
}

// Loopback addresses of a router.
type Loopback struct {
	IPv4 string `yaml:"ipv4" json:"ipv4"`
	IPv6 string `yaml:"ipv6" json:"ipv6"`
}

// Encapsulations of a backbone link.
const (
	EncapGRE   = "gre"
	EncapVXLAN = "vxlan"
)

// Link is one backbone link: a tunnel between two routers over the underlay.
type Link struct {
	Between [2]string `yaml:"between" json:"between"`
	// Encap is "gre" (ip6gre) or "vxlan" (point-to-point VXLAN).
	Encap string `yaml:"encap" json:"encap"`
	Cost  int    `yaml:"cost" json:"cost,omitempty"`
	// MTU pins the tunnel MTU; it may not exceed what the stack allows.
	MTU int `yaml:"mtu" json:"mtu,omitempty"`
	// UnderlayMTU overrides the underlay MTU for this path.
	UnderlayMTU int `yaml:"underlay_mtu" json:"underlay_mtu,omitempty"`
	// LDP turns LDP off on this link when false.
	LDP *bool `yaml:"ldp" json:"ldp,omitempty"`
	// Encryption "none" leaves this link in clear.
	Encryption string `yaml:"encryption" json:"encryption,omitempty"`
	// Unnumbered links are refused; the field exists to explain why.
	Unnumbered bool `yaml:"unnumbered" json:"unnumbered,omitempty"`
	// Pinned link networks (optional).
	IPv4 string `yaml:"ipv4" json:"ipv4"`
	IPv6 string `yaml:"ipv6" json:"ipv6"`
	// EncapLimit keeps the ip6gre encapsulation-limit option (8 bytes).
	EncapLimit bool `yaml:"encap_limit" json:"encap_limit,omitempty"`
}

// VRF is a customer VPN.
type VRF struct {
	Name string `yaml:"name" json:"name"`
	// ID numbers the VRF: it forms the auto RD (<loopback>:<id>) and the
	// kernel table (1000+id) unless Table is set.
	ID     int      `yaml:"id" json:"id"`
	RD     string   `yaml:"rd" json:"rd,omitempty"`
	Import []string `yaml:"import" json:"import"`
	Export []string `yaml:"export" json:"export"`
	Table  int      `yaml:"table" json:"table,omitempty"`
}

// Routing between PE and CE.
const (
	RoutingStatic = "static"
	RoutingEBGP   = "ebgp"
)

// Site attaches a CE to a PE in a VRF.
type Site struct {
	CE  string `yaml:"ce" json:"ce"`
	PE  string `yaml:"pe" json:"pe"`
	VRF string `yaml:"vrf" json:"vrf"`
	// IPv4/IPv6 are the PE-CE link networks; the PE takes the first usable
	// address, the CE the second.
	IPv4 string `yaml:"ipv4" json:"ipv4"`
	IPv6 string `yaml:"ipv6" json:"ipv6"`
	// Prefixes are the customer networks behind the CE (the CE holds the
	// first address of each).
	Prefixes []string `yaml:"prefixes" json:"prefixes"`
	Routing  string   `yaml:"routing" json:"routing"`
	// MaxPrefixes caps the routes the PE accepts from the CE's eBGP
	// session, per address family: a CE that sends more is cut off
	// (maximum-prefix; default 1000, 1-4294967295).
	MaxPrefixes int64 `yaml:"max_prefixes" json:"max_prefixes"`
}

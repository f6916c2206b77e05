package intent

// Default values filled in by Load for fields the user omitted.
const (
	DefaultUnderlayMTU    = 1500
	DefaultIKE            = "chacha20poly1305-prfsha256-x25519"
	DefaultESP            = "chacha20poly1305-x25519"
	DefaultArea           = "0.0.0.0"
	DefaultHello          = 10
	DefaultDead           = 40
	DefaultRetransmit     = 5
	DefaultLDPSyncWait    = 10
	DefaultLDPSession     = 180
	DefaultCost           = 10
	DefaultConnectRetry   = 120
	DefaultBFDInterval    = 300
	DefaultBFDMultiplier  = 3
	DefaultPlatformLabels = 100000
	DefaultLabelStack     = 2
	DefaultUnderlayIf     = "eth0"
	DefaultRekeyTime      = "4h"
	DefaultGracePeriod    = 120
	DefaultBGPRestart     = 120
	DefaultBGPStalepath   = 360
	DefaultMaxPrefixes    = 1000
)

func boolPtr(b bool) *bool { return &b }

func (in *Intent) applyDefaults() {
	for _, r := range in.Routers {
		if h := r.Host; h != nil && h.Network == "" {
			h.Network = NetworkD
			if h.RedHat() {
				h.Network = NetworkManager
			}
		}
	}
	if in.Underlay.MTU == 0 {
		in.Underlay.MTU = DefaultUnderlayMTU
	}
	e := &in.Encryption
	if e.Type == "" {
		e.Type = "ipsec"
	}
	if e.Mode == "" {
		e.Mode = "transport"
	}
	if e.IKE == "" {
		e.IKE = DefaultIKE
	}
	if e.ESP == "" {
		e.ESP = DefaultESP
	}
	if e.Auth == "" {
		e.Auth = "psk"
	}
	if e.RekeyTime == "" {
		e.RekeyTime = DefaultRekeyTime
	}
	p := &in.Protocols
	if p.OSPF.Area == "" {
		p.OSPF.Area = DefaultArea
	}
	if p.OSPF.HelloInterval == 0 {
		p.OSPF.HelloInterval = DefaultHello
	}
	if p.OSPF.RetransmitInterval == 0 {
		p.OSPF.RetransmitInterval = DefaultRetransmit
	}
	if p.OSPF.DeadInterval == 0 {
		p.OSPF.DeadInterval = 4 * p.OSPF.HelloInterval
	}
	if p.OSPF.Cost == 0 {
		p.OSPF.Cost = DefaultCost
	}
	if p.OSPF.GracePeriod == 0 {
		p.OSPF.GracePeriod = DefaultGracePeriod
	}
	if p.BGP.RestartTime == 0 {
		p.BGP.RestartTime = DefaultBGPRestart
	}
	if p.BGP.StalepathTime == 0 {
		p.BGP.StalepathTime = DefaultBGPStalepath
	}
	for i := range in.Sites {
		if in.Sites[i].MaxPrefixes == 0 {
			in.Sites[i].MaxPrefixes = DefaultMaxPrefixes
		}
	}
	if p.LDP.Enabled == nil {
		p.LDP.Enabled = boolPtr(true)
	}
	if p.LDP.Sync == nil {
		p.LDP.Sync = boolPtr(true)
	}
	if p.LDP.SessionHoldtime == 0 {
		p.LDP.SessionHoldtime = DefaultLDPSession
	}
	if p.LDP.SyncWait == 0 {
		p.LDP.SyncWait = DefaultLDPSyncWait
	}
	if p.LDP.HelloInterval == 0 {
		p.LDP.HelloInterval = 5
	}
	if p.LDP.HoldTime == 0 {
		p.LDP.HoldTime = 3 * p.LDP.HelloInterval
	}
	if p.BGP.ConnectRetry == 0 {
		p.BGP.ConnectRetry = DefaultConnectRetry
	}
	if p.BFD.Enabled == nil {
		p.BFD.Enabled = boolPtr(true)
	}
	if p.BFD.IntervalMS == 0 {
		p.BFD.IntervalMS = DefaultBFDInterval
	}
	if p.BFD.Multiplier == 0 {
		p.BFD.Multiplier = DefaultBFDMultiplier
	}
	if p.MPLS.PlatformLabels == 0 {
		p.MPLS.PlatformLabels = DefaultPlatformLabels
	}
	if p.MPLS.LabelStack == 0 {
		p.MPLS.LabelStack = DefaultLabelStack
	}
	for i := range in.Routers {
		r := &in.Routers[i]
		if r.Underlay.Interface == "" && r.Role != RoleCE {
			r.Underlay.Interface = DefaultUnderlayIf
		}
	}
	for i := range in.Links {
		l := &in.Links[i]
		if l.Encap == "" {
			l.Encap = EncapGRE
		}
		if l.Cost == 0 {
			l.Cost = p.OSPF.Cost
		}
		if l.LDP == nil {
			l.LDP = boolPtr(*p.LDP.Enabled)
		}
		if l.Encryption == "" {
			l.Encryption = e.Type
		}
	}
	for i := range in.Sites {
		if in.Sites[i].Routing == "" {
			in.Sites[i].Routing = RoutingStatic
		}
	}
}

// LDPEnabled reports whether LDP runs on the link.
func (l Link) LDPEnabled() bool { return l.LDP == nil || *l.LDP }

// Encrypted reports whether the link is protected by IPsec.
func (l Link) Encrypted() bool { return l.Encryption == "ipsec" }

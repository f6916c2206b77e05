package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/backbone-net/backbone/internal/plan"
)

func newPlanCmd(e *env) *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show the derived plan: addresses, interfaces, RDs, BGP sessions, MTU budget per link",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, p, err := loadPlanFrom(path, e.stdin, e.stderr)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.stdout, p)
			}
			printPlan(e.stdout, p)
			return nil
		},
	}
	intentFlag(cmd, &path)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

func printPlan(w io.Writer, p *plan.Plan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Backbone %q, AS %d, encryption: %s\n\n", p.Name, p.ASN, encSummary(p.Encryption))
	fmt.Fprintln(tw, "ROUTER\tROLE\tLOOPBACK V4\tLOOPBACK V6\tUNDERLAY")
	for _, r := range p.Routers {
		u := "-"
		if r.Underlay != nil {
			var parts []string
			if r.Underlay.IPv6.IsValid() {
				parts = append(parts, r.Underlay.IPv6.String())
			}
			if r.Underlay.IPv4.IsValid() {
				parts = append(parts, r.Underlay.IPv4.String())
			}
			u = r.Underlay.Interface + " " + strings.Join(parts, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, strings.ToUpper(r.Role), orDash(r.LoopbackV4.IsValid(), r.LoopbackV4.String()), orDash(r.LoopbackV6.IsValid(), r.LoopbackV6.String()), u)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "LINK\tENCAP\tIPV4\tIPV6\tIPSEC\tLDP\tTUNNEL MTU\tCUSTOMER MTU")
	for _, l := range p.Links {
		enc := l.Encap
		if l.VNI != 0 {
			enc = fmt.Sprintf("%s vni %d", enc, l.VNI)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", l.Name, enc, l.IPv4, l.IPv6, yesNo(l.Encrypted), yesNo(l.LDP), l.MTU.TunnelMTU, l.MTU.InnerMTU)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "INTERFACE\tROUTER\tPEER\tIPV4\tIPV6\tLOCAL -> REMOTE\tMTU\tCOST")
	for _, r := range p.Routers {
		for _, i := range r.Interfaces {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s -> %s\t%d\t%d\n", i.Name, r.Name, i.Peer, i.IPv4, i.IPv6, i.Local, i.Remote, i.MTU, i.Cost)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "VRF\tID\tTABLE\tRD\tIMPORT\tEXPORT")
	for _, v := range p.VRFs {
		rd := v.RD
		if rd == "" || rd == "auto" {
			rd = "<loopback>:" + fmt.Sprint(v.ID)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", v.Name, v.ID, v.Table, rd, strings.Join(v.Import, ","), strings.Join(v.Export, ","))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SITE\tPE\tVRF\tROUTING\tPE ADDRESSES\tCE ADDRESSES\tPREFIXES\tMTU")
	for _, s := range p.Sites {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s.CE, s.PE, s.VRF, s.Routing, joinValid(s.PEIPv4.String(), s.PEIPv6.String()), joinValid(s.CEIPv4.String(), s.CEIPv6.String()), prefixList(s), s.MTU)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nMTU budget per link (largest packet, outermost layer first):\n")
	for _, l := range p.Links {
		m := l.MTU
		fmt.Fprintf(w, "  %s (%s): underlay %d = ", l.Name, l.Encap, m.UnderlayMTU)
		var parts []string
		for _, ly := range m.Layers {
			parts = append(parts, fmt.Sprintf("%s %d", ly.Name, ly.Bytes))
		}
		parts = append(parts, fmt.Sprintf("customer packet %d", m.InnerMTU))
		if m.Slack > 0 {
			parts = append(parts, fmt.Sprintf("unused %d", m.Slack))
		}
		fmt.Fprintf(w, "%s\n", strings.Join(parts, " + "))
		fmt.Fprintf(w, "    tunnel MTU %d (max %d), %d labels, largest customer packet %d\n", m.TunnelMTU, m.MaxTunnelMTU, m.Labels, m.InnerMTU)
	}
	fmt.Fprintf(w, "\nLargest customer packet across the backbone: %d bytes (set on every PE-CE link)\n", p.CustomerMTU)
}

func encSummary(e plan.Encryption) string {
	if !e.Enabled {
		return "none"
	}
	s := fmt.Sprintf("IPsec %s, IKE %s, ESP %s, auth %s", e.Mode, e.IKE, e.ESP, e.Auth)
	if e.UDPEncap {
		s += ", UDP-encapsulated"
	}
	return s
}

func orDash(ok bool, s string) string {
	if !ok {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func joinValid(ss ...string) string {
	var out []string
	for _, s := range ss {
		if s != "invalid Prefix" && s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

func prefixList(s *plan.Site) string {
	var out []string
	for _, p := range s.Prefixes {
		out = append(out, p.String())
	}
	return strings.Join(out, " ")
}

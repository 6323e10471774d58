// Package netconf reads a member's network into one model, Network: from
// the plan (members[].network), or from the master's own configuration on
// its root filesystem, which the rescue image then brings up as the master
// would (package netup applies it). The master's configuration may be
// NetworkManager keyfiles (RHCOS, RHEL 9; keyfile.go), netplan (Ubuntu;
// netplan.go) or ifcfg files (older RHEL; ifcfg.go). Each is read into Links,
// and Resolve picks the chain of links that carries the member's address:
// a NIC or a bond of NICs, and maybe a VLAN on top.
package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
)

// Network is what the rescue image brings up for its member.
type Network struct {
	// Port is the one NIC, when there is no bond.
	Port *Port
	// Bond bonds NICs, when there is one.
	Bond *Bond
	// VLAN tags the address's traffic on top of Port or Bond (0: none).
	VLAN int
	// MTU of the NIC, bond and VLAN (0: the driver's default).
	MTU int
	// Address is the member's address with its prefix.
	Address netip.Prefix
	// Gateway is the default route's next hop, if any.
	Gateway netip.Addr
	// Routes are further routes.
	Routes []Route
	// DNS servers for /etc/resolv.conf.
	DNS []netip.Addr
	// Source says where this came from: "the plan" or the master's files.
	Source string
}

// Port is one NIC, by MAC address or (when the source gives none) name.
type Port struct {
	MAC  net.HardwareAddr
	Name string
}

func (p Port) String() string {
	if p.MAC != nil {
		return p.MAC.String()
	}
	return p.Name
}

// Bond is a Linux bond of NICs.
type Bond struct {
	Name   string
	Mode   string // active-backup or 802.3ad
	MIIMon int    // ms
	Ports  []Port
}

// Route is a route to a network through a next hop.
type Route struct {
	To  netip.Prefix
	Via netip.Addr
}

// Kinds of Link.
const (
	Ethernet = "ethernet"
	BondKind = "bond"
	VLANKind = "vlan"
)

// Link is one interface as a configuration file describes it.
type Link struct {
	// Name is how the configuration refers to it (ens3, bond0, bond0.100).
	Name string
	// Kind is Ethernet, BondKind or VLANKind.
	Kind string
	// MAC is the NIC's address, if the configuration gives it.
	MAC net.HardwareAddr
	// Master is the Name of the bond this NIC is a port of.
	Master string
	// BondMode and MIIMon are a bond's options.
	BondMode string
	MIIMon   int
	// VLANID and Parent are a VLAN's tag and the Name of its parent.
	VLANID int
	Parent string
	MTU    int
	// Addrs are the static addresses with their prefixes.
	Addrs []netip.Prefix
	// Gateways are the default routes' next hops (one per IP version).
	Gateways []netip.Addr
	Routes   []Route
	DNS      []netip.Addr
	// File is the file the link was read from.
	File string
}

// Resolve returns the network that carries ip among links (read from
// files, named in the error): the link holding ip as a static address, the
// VLAN's parent, the bond's ports.
func Resolve(links []Link, ip netip.Addr, files string) (*Network, error) {
	byName := map[string]*Link{}
	for i := range links {
		byName[links[i].Name] = &links[i]
	}
	var top *Link
	for i := range links {
		for _, a := range links[i].Addrs {
			if a.Addr() == ip {
				top = &links[i]
			}
		}
	}
	if top == nil {
		var seen []string
		for _, l := range links {
			for _, a := range l.Addrs {
				seen = append(seen, l.Name+" "+a.String())
			}
		}
		sort.Strings(seen)
		return nil, fmt.Errorf("no interface in %s has the static address %s (addresses found: %s): give members[].network in the plan",
			files, ip, orNone(strings.Join(seen, ", ")))
	}
	var addr netip.Prefix
	for _, a := range top.Addrs {
		if a.Addr() == ip {
			addr = a
		}
	}
	n := &Network{Address: addr, DNS: top.DNS, MTU: top.MTU, Source: top.File}
	// The gateway and routes of the address's IP version.
	for _, gw := range top.Gateways {
		if gw.Is4() == ip.Is4() {
			n.Gateway = gw
		}
	}
	for _, r := range top.Routes {
		if r.Via.Is4() == ip.Is4() {
			n.Routes = append(n.Routes, r)
		}
	}
	base := top
	if top.Kind == VLANKind {
		if top.VLANID < 1 || top.VLANID > 4094 {
			return nil, fmt.Errorf("%s: VLAN %s has no tag from 1 to 4094", top.File, top.Name)
		}
		if top.Parent == "" {
			return nil, fmt.Errorf("%s: VLAN %s names no parent interface", top.File, top.Name)
		}
		n.VLAN = top.VLANID
		if p, ok := byName[top.Parent]; ok {
			base = p
			if p.File != top.File {
				n.Source += ", " + p.File
			}
		} else {
			base = &Link{Name: top.Parent, Kind: Ethernet}
		}
		if base.MTU > n.MTU {
			n.MTU = base.MTU
		}
	}
	switch base.Kind {
	case BondKind:
		b := &Bond{Name: base.Name, Mode: base.BondMode, MIIMon: base.MIIMon}
		if b.Mode == "" {
			b.Mode = "balance-rr" // the kernel's default, refused below
		}
		if b.Mode != "active-backup" && b.Mode != "802.3ad" {
			return nil, fmt.Errorf("%s: bond %s has mode %s: the rescue image sets up active-backup and 802.3ad bonds; give members[].network in the plan", base.File, base.Name, b.Mode)
		}
		var portFiles []string
		for _, l := range links {
			if l.Master == base.Name {
				b.Ports = append(b.Ports, Port{MAC: l.MAC, Name: l.Name})
				if l.File != base.File && l.File != top.File {
					portFiles = append(portFiles, l.File)
				}
			}
		}
		if len(b.Ports) == 0 {
			return nil, fmt.Errorf("%s: bond %s has no ports in %s", base.File, base.Name, files)
		}
		n.Bond = b
		if len(portFiles) > 0 {
			n.Source += ", " + strings.Join(portFiles, ", ")
		}
	case Ethernet:
		n.Port = &Port{MAC: base.MAC, Name: base.Name}
	default:
		return nil, fmt.Errorf("%s: %s is a %s, which cannot carry a VLAN here", base.File, base.Name, base.Kind)
	}
	return n, nil
}

// Describe says in one line what the network is, for the console.
func (n *Network) Describe() string {
	var b strings.Builder
	switch {
	case n.Bond != nil:
		var ports []string
		for _, p := range n.Bond.Ports {
			ports = append(ports, p.String())
		}
		fmt.Fprintf(&b, "bond %s (%s: %s)", n.Bond.Name, n.Bond.Mode, strings.Join(ports, ", "))
	case n.Port != nil:
		fmt.Fprintf(&b, "NIC %s", n.Port)
	}
	if n.VLAN != 0 {
		fmt.Fprintf(&b, " vlan %d", n.VLAN)
	}
	b.WriteString(n.Layer3())
	return b.String()
}

// Layer3 is the part of Describe after the link: " → address", then the
// gateway, routes, MTU and DNS servers that are set.
func (n *Network) Layer3() string {
	var b strings.Builder
	fmt.Fprintf(&b, " → %s", n.Address)
	if n.Gateway.IsValid() {
		fmt.Fprintf(&b, " gw %s", n.Gateway)
	}
	for _, r := range n.Routes {
		fmt.Fprintf(&b, ", %s via %s", r.To, r.Via)
	}
	if n.MTU != 0 {
		fmt.Fprintf(&b, " mtu %d", n.MTU)
	}
	if len(n.DNS) > 0 {
		var d []string
		for _, a := range n.DNS {
			d = append(d, a.String())
		}
		fmt.Fprintf(&b, " dns %s", strings.Join(d, " "))
	}
	return b.String()
}

// setGateway sets the link's default gateway of gw's IP version.
func (l *Link) setGateway(gw netip.Addr) {
	for i, g := range l.Gateways {
		if g.Is4() == gw.Is4() {
			l.Gateways[i] = gw
			return
		}
	}
	l.Gateways = append(l.Gateways, gw)
}

// parsePrefix reads "10.0.1.10/24", or a bare address with the given
// default prefix length (-1: the whole address).
func parsePrefix(s string, defBits int) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if defBits < 0 {
		defBits = a.BitLen()
	}
	return a.Prefix(defBits)
}

// isDefault says whether a route destination means the default route.
func isDefault(to string) bool {
	switch strings.TrimSpace(to) {
	case "default", "0.0.0.0/0", "::/0":
		return true
	}
	return false
}

func parseMAC(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("%q is not an Ethernet MAC address", s)
	}
	return hw, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// safely turns a parser's panic into an error naming the file: a library's
// panic on a master's odd file is a bug to report, not a crash of the boot.
func safely(file string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: the parser failed (%v): please report this file", file, r)
		}
	}()
	return f()
}

package plan

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Network is how the rescue image brings up a member's network when the
// master's own configuration cannot be used (or should not be): the
// interface (one NIC, or a bond of NICs), a VLAN on top, and the routes and
// DNS servers. The address is the member's ip and prefix. Without it the
// image reads the master's own configuration from its root.
type Network struct {
	// Interface is one NIC, by MAC address or by name (the name the
	// rescue image's kernel gives it, like eth0). Exclusive with Bond.
	Interface *NetInterface `json:"interface,omitempty"`
	// Bond bonds NICs given by MAC address. Exclusive with Interface.
	Bond *NetBond `json:"bond,omitempty"`
	// VLAN puts the address on a tagged VLAN on top of Interface or Bond.
	VLAN *NetVLAN `json:"vlan,omitempty"`
	// MTU of the interface, bond and VLAN (0: the driver's default).
	MTU int `json:"mtu,omitempty"`
	// Gateway is the default route's next hop (on the member's subnet).
	Gateway string `json:"gateway,omitempty"`
	// Routes are further routes (to a CIDR via a next hop).
	Routes []NetRoute `json:"routes,omitempty"`
	// DNS servers, written to the rescue image's /etc/resolv.conf.
	DNS []string `json:"dns,omitempty"`
}

// NetInterface names one NIC.
type NetInterface struct {
	MAC  string `json:"mac,omitempty"`
	Name string `json:"name,omitempty"`
}

// NetBond is a Linux bond.
type NetBond struct {
	// Name of the bond device; default bond0.
	Name string `json:"name,omitempty"`
	// Mode is active-backup or 802.3ad.
	Mode string `json:"mode"`
	// Members are the MAC addresses of the bonded NICs.
	Members []string `json:"members"`
	// MIIMon is the link check interval in milliseconds; default 100.
	MIIMon int `json:"miimon,omitempty"`
}

// NetVLAN is a tagged VLAN.
type NetVLAN struct {
	// ID is the VLAN tag, 1 to 4094.
	ID int `json:"id"`
	// Parent is the interface or bond name the VLAN sits on; it must be
	// the one this network defines, and may be left empty.
	Parent string `json:"parent,omitempty"`
}

// NetRoute is a route to a network through a next hop.
type NetRoute struct {
	To  string `json:"to"`
	Via string `json:"via"`
}

// BondModes are the bond modes the rescue image sets up.
var BondModes = []string{"active-backup", "802.3ad"}

// checkNetwork reports every problem of member m's network.
func checkNetwork(where string, m Member) []error {
	n := m.Network
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf(where+".network: "+format, a...))
	}
	if m.IP == "" {
		add("the member has no ip: give members[].ip (and prefix) for the address the network carries")
	}
	switch {
	case n.Interface == nil && n.Bond == nil:
		add("give interface (mac: or name:) or bond (mode:, members: [MAC...])")
	case n.Interface != nil && n.Bond != nil:
		add("give interface or bond, not both (a bond lists its NICs in bond.members)")
	}
	if i := n.Interface; i != nil {
		if i.MAC == "" && i.Name == "" {
			add("interface: give mac: (like 52:54:00:12:34:56) or name: (like eth0)")
		}
		if i.MAC != "" {
			if err := checkMAC(i.MAC); err != nil {
				add("interface.mac: %v", err)
			}
		}
		if i.Name != "" {
			if err := checkLinkName(i.Name); err != nil {
				add("interface.name: %v", err)
			}
		}
	}
	if b := n.Bond; b != nil {
		if b.Name != "" {
			if err := checkLinkName(b.Name); err != nil {
				add("bond.name: %v", err)
			}
		}
		if !contains(BondModes, b.Mode) {
			add("bond.mode %q: use %s", b.Mode, strings.Join(BondModes, " or "))
		}
		if len(b.Members) == 0 {
			add("bond.members is empty: list the MAC addresses of the bonded NICs")
		}
		seen := map[string]bool{}
		for i, mac := range b.Members {
			if err := checkMAC(mac); err != nil {
				add("bond.members[%d]: %v", i, err)
				continue
			}
			hw, _ := net.ParseMAC(mac)
			if seen[hw.String()] {
				add("bond.members[%d]: %s is listed twice", i, mac)
			}
			seen[hw.String()] = true
		}
		if b.MIIMon < 0 || b.MIIMon > 60000 {
			add("bond.miimon %d: give the link check interval in milliseconds (like 100)", b.MIIMon)
		}
	}
	if v := n.VLAN; v != nil {
		if v.ID < 1 || v.ID > 4094 {
			add("vlan.id %d is not a VLAN tag from 1 to 4094", v.ID)
		}
		if v.Parent != "" && v.Parent != n.baseName() {
			add("vlan.parent %q is not the interface or bond this network defines (%s): leave it empty or name that one", v.Parent, orDash(n.baseName()))
		}
	}
	if n.MTU != 0 && (n.MTU < 68 || n.MTU > 65535) {
		add("mtu %d: give 68 to 65535 (1500, or 9000 for jumbo frames)", n.MTU)
	}
	ip, ipErr := netip.ParseAddr(m.IP)
	var subnet netip.Prefix
	if ipErr == nil {
		bits := m.Prefix
		if bits == 0 {
			bits = 24
			if ip.Is6() {
				bits = 64
			}
		}
		subnet, _ = ip.Prefix(bits)
	}
	if n.Gateway != "" {
		gw, err := netip.ParseAddr(n.Gateway)
		switch {
		case err != nil:
			add("gateway %q is not an IP address", n.Gateway)
		case ipErr == nil && gw.Is4() != ip.Is4():
			add("gateway %s and ip %s are not of one IP version", gw, ip)
		case subnet.IsValid() && !subnet.Contains(gw):
			add("gateway %s is not on the member's subnet %s: the gateway must be reachable without a router", gw, subnet)
		case gw == ip:
			add("gateway %s is the member's own address", gw)
		}
	}
	for i, r := range n.Routes {
		to, err := netip.ParsePrefix(r.To)
		if err != nil {
			add("routes[%d].to %q is not a network like 10.0.2.0/24", i, r.To)
		} else if to.Masked() != to {
			add("routes[%d].to %s has host bits set: give the network, %s", i, r.To, to.Masked())
		}
		via, err := netip.ParseAddr(r.Via)
		if err != nil {
			add("routes[%d].via %q is not an IP address", i, r.Via)
		} else if subnet.IsValid() && !subnet.Contains(via) {
			add("routes[%d].via %s is not on the member's subnet %s", i, via, subnet)
		}
	}
	for i, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			add("dns[%d] %q is not an IP address", i, d)
		}
	}
	return errs
}

// baseName is the name of the device the VLAN (if any) sits on.
func (n *Network) baseName() string {
	switch {
	case n.Bond != nil:
		if n.Bond.Name == "" {
			return "bond0"
		}
		return n.Bond.Name
	case n.Interface != nil:
		return n.Interface.Name
	}
	return ""
}

func checkMAC(s string) error {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("%q is not an Ethernet MAC address like 52:54:00:12:34:56", s)
	}
	return nil
}

// checkLinkName accepts what Linux accepts as an interface name.
func checkLinkName(s string) error {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
		return fmt.Errorf("%q is not an interface name (1 to 15 characters, no /, : or spaces)", s)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

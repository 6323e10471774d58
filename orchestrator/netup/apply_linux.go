package netup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/netconf"
)

// resolvConf is the rescue image's resolver configuration.
var resolvConf = "/etc/resolv.conf"

// apply brings n up with netlink and returns what it set up, port states
// included, for the console.
func apply(ctx context.Context, n *netconf.Network, load LoadModules, wait time.Duration) (string, error) {
	if err := linkUp("lo", nil); err != nil {
		return "", fmt.Errorf("loopback: %w", err)
	}
	ports := []netconf.Port{}
	if n.Bond != nil {
		ports = n.Bond.Ports
	} else if n.Port != nil {
		ports = []netconf.Port{*n.Port}
	}
	links, err := findPorts(ctx, ports, wait)
	if err != nil {
		return "", err
	}
	var base netlink.Link
	if n.Bond != nil {
		if base, err = makeBond(n.Bond, n.MTU, links, load); err != nil {
			return "", err
		}
	} else {
		base = links[0]
		if err := setMTU(base, n.MTU); err != nil {
			return "", err
		}
		if err := netlink.LinkSetUp(base); err != nil {
			return "", fmt.Errorf("%s: set up: %w", base.Attrs().Name, err)
		}
	}
	top := base
	if n.VLAN != 0 {
		if top, err = makeVLAN(base, n.VLAN, n.MTU, load); err != nil {
			return "", err
		}
	}
	name := top.Attrs().Name
	if err := netlink.AddrAdd(top, &netlink.Addr{IPNet: prefixNet(n.Address)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("%s: add address %s: %w", name, n.Address, err)
	}
	if err := netlink.LinkSetUp(top); err != nil {
		return "", fmt.Errorf("%s: set up: %w", name, err)
	}
	if n.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: top.Attrs().Index, Gw: n.Gateway.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return "", fmt.Errorf("%s: default route via %s: %w", name, n.Gateway, err)
		}
	}
	for _, rt := range n.Routes {
		r := &netlink.Route{LinkIndex: top.Attrs().Index, Dst: prefixNet(rt.To), Gw: rt.Via.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return "", fmt.Errorf("%s: route to %s via %s: %w", name, rt.To, rt.Via, err)
		}
	}
	if len(n.DNS) > 0 {
		var b bytes.Buffer
		for _, d := range n.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		if err := os.WriteFile(resolvConf, b.Bytes(), 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", resolvConf, err)
		}
	}
	return describe(ctx, n, base, top, links), nil
}

// findPorts waits up to wait for every port's NIC to appear (its driver may
// still be probing) and returns them in order. A port is found by its
// permanent MAC address (a bond changes the current one), else by name:
// the rescue kernel's, or the predictable name udev gives it on the master.
func findPorts(ctx context.Context, ports []netconf.Port, wait time.Duration) ([]netlink.Link, error) {
	deadline := time.Now().Add(wait)
	for {
		all, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list network interfaces: %w", err)
		}
		var found []netlink.Link
		var missing []string
		for _, p := range ports {
			if l := findPort(all, p); l != nil {
				found = append(found, l)
			} else {
				missing = append(missing, p.String())
			}
		}
		if len(missing) == 0 {
			return found, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no network interface %s appeared within %s (interfaces: %s): is the NIC's driver in the image, and is its MAC address or name right?",
				strings.Join(missing, ", "), wait, interfaceList(all))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func findPort(all []netlink.Link, p netconf.Port) netlink.Link {
	for _, l := range all {
		a := l.Attrs()
		// A NIC ("device"; veth in tests). A bond or VLAN carries its
		// port's MAC address too, and is never a port itself.
		if t := l.Type(); t != "device" && t != "veth" {
			continue
		}
		if p.MAC != nil {
			if bytes.Equal(a.PermHWAddr, p.MAC) || (len(a.PermHWAddr) == 0 && bytes.Equal(a.HardwareAddr, p.MAC)) {
				return l
			}
			continue
		}
		if a.Name == p.Name {
			return l
		}
	}
	// The master's name for it (ens3, enp1s0), as udev would give it.
	for _, l := range all {
		if t := l.Type(); t != "device" && t != "veth" {
			continue
		}
		for _, n := range PredictableNames(sysClassNet, l.Attrs().Name) {
			if n == p.Name {
				return l
			}
		}
	}
	return nil
}

// sysClassNet is where the kernel lists network interfaces.
var sysClassNet = "/sys/class/net"

func interfaceList(all []netlink.Link) string {
	var s []string
	for _, l := range all {
		if a := l.Attrs(); a.Name != "lo" {
			s = append(s, a.Name+" "+a.HardwareAddr.String())
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// makeBond creates the bond (loading the bonding module), enslaves the
// ports and sets it up. A bond of that name without ports (the one the
// bonding module makes when it loads) is replaced.
func makeBond(b *netconf.Bond, mtu int, ports []netlink.Link, load LoadModules) (netlink.Link, error) {
	if load != nil {
		if err := load("bonding"); err != nil {
			return nil, fmt.Errorf("bond %s: load the bonding module: %w", b.Name, err)
		}
	}
	if old, err := netlink.LinkByName(b.Name); err == nil {
		if err := netlink.LinkDel(old); err != nil {
			return nil, fmt.Errorf("bond %s: replace the existing %s: %w", b.Name, old.Type(), err)
		}
	}
	bond := netlink.NewLinkBond(netlink.LinkAttrs{Name: b.Name, MTU: mtu})
	bond.Mode = netlink.StringToBondMode(b.Mode)
	bond.Miimon = b.MIIMon
	if bond.Miimon == 0 {
		bond.Miimon = 100
	}
	if err := netlink.LinkAdd(bond); err != nil {
		return nil, fmt.Errorf("bond %s (%s): create: %w", b.Name, b.Mode, err)
	}
	link, err := netlink.LinkByName(b.Name)
	if err != nil {
		return nil, fmt.Errorf("bond %s: %w", b.Name, err)
	}
	for _, p := range ports {
		// A port joins a bond while down; the bond sets it up.
		if err := netlink.LinkSetDown(p); err != nil {
			return nil, fmt.Errorf("bond %s: set %s down: %w", b.Name, p.Attrs().Name, err)
		}
		if err := setMTU(p, mtu); err != nil {
			return nil, err
		}
		if err := netlink.LinkSetMaster(p, link); err != nil {
			return nil, fmt.Errorf("bond %s: enslave %s: %w", b.Name, p.Attrs().Name, err)
		}
		if err := netlink.LinkSetUp(p); err != nil {
			return nil, fmt.Errorf("bond %s: set %s up: %w", b.Name, p.Attrs().Name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bond %s: set up: %w", b.Name, err)
	}
	return link, nil
}

// makeVLAN creates the tagged VLAN base.ID on base (loading 8021q).
func makeVLAN(base netlink.Link, id, mtu int, load LoadModules) (netlink.Link, error) {
	name := fmt.Sprintf("%s.%d", base.Attrs().Name, id)
	if len(name) > 15 {
		name = fmt.Sprintf("vlan%d", id)
	}
	if load != nil {
		if err := load("8021q"); err != nil {
			return nil, fmt.Errorf("vlan %d: load the 8021q module: %w", id, err)
		}
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: base.Attrs().Index, MTU: mtu}, VlanId: id}
	if err := netlink.LinkAdd(v); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("vlan %d on %s: create %s: %w", id, base.Attrs().Name, name, err)
	}
	return netlink.LinkByName(name)
}

func setMTU(l netlink.Link, mtu int) error {
	if mtu == 0 || l.Attrs().MTU == mtu {
		return nil
	}
	if err := netlink.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("%s: set MTU %d: %w", l.Attrs().Name, mtu, err)
	}
	return nil
}

// prefixNet converts an address with its prefix length for netlink.
func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// describe says what was set up: each port's name, MAC and link state
// (after giving a bond up to 5s to find a port with carrier), the active
// port of an active-backup bond, the VLAN, address, gateway and routes.
func describe(ctx context.Context, n *netconf.Network, base, top netlink.Link, ports []netlink.Link) string {
	var b strings.Builder
	if n.Bond != nil {
		sys := filepath.Join("/sys/class/net", base.Attrs().Name)
		deadline := time.Now().Add(5 * time.Second)
		for !carrier(sys) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
		active := readTrim(filepath.Join(sys, "bonding", "active_slave"))
		var ps []string
		for _, p := range ports {
			state := "down"
			if carrier(filepath.Join("/sys/class/net", p.Attrs().Name)) {
				state = "up"
			}
			if p.Attrs().Name == active {
				state += ", active"
			}
			mac := p.Attrs().PermHWAddr
			if len(mac) == 0 {
				mac = p.Attrs().HardwareAddr
			}
			ps = append(ps, fmt.Sprintf("%s %s %s", p.Attrs().Name, mac, state))
		}
		fmt.Fprintf(&b, "%s (%s: %s)", base.Attrs().Name, n.Bond.Mode, strings.Join(ps, "; "))
	} else {
		fmt.Fprintf(&b, "%s %s", base.Attrs().Name, base.Attrs().HardwareAddr)
	}
	if n.VLAN != 0 {
		fmt.Fprintf(&b, " vlan %d (%s)", n.VLAN, top.Attrs().Name)
	}
	b.WriteString(n.Layer3())
	return b.String()
}

func carrier(sysDir string) bool { return readTrim(filepath.Join(sysDir, "carrier")) == "1" }

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

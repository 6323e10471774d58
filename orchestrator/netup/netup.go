// Package netup brings up the rescue machine's network for the member it
// plays, as the master has it: the plan's members[].network if it gives
// one, else the master's own configuration read from its root (package
// netconf: NetworkManager keyfiles, netplan, ifcfg files), with bonds,
// VLANs, MTU, gateway, routes and DNS servers set up by netlink (Member).
// A member whose master has no configuration that carries its address gets
// its plan address (members[].ip with members[].prefix, default /24) on the
// first virtio network interface, else the first Ethernet one (Static).
// There is no DHCP: the recovery only talks to the other masters, and
// ProbePeers shows on the console which of them it reaches.
package netup

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// Address returns the member's address with its prefix length (default 24
// for IPv4 and 64 for IPv6). ok is false when the plan gives no IP.
func Address(m plan.Member) (ipnet *net.IPNet, ok bool, err error) {
	if m.IP == "" {
		return nil, false, nil
	}
	ip := net.ParseIP(m.IP)
	if ip == nil {
		return nil, false, fmt.Errorf("member %s: ip %q is not an IP address", m.Name, m.IP)
	}
	bits, prefix := 128, m.Prefix
	if v4 := ip.To4(); v4 != nil {
		ip, bits = v4, 32
		if prefix == 0 {
			prefix = 24
		}
	} else if prefix == 0 {
		prefix = 64
	}
	if prefix > bits {
		return nil, false, fmt.Errorf("member %s: prefix /%d is too long for %s", m.Name, prefix, m.IP)
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(prefix, bits)}, true, nil
}

// PickInterface chooses the interface to configure from sysfs (sysClassNet
// is /sys/class/net): the first virtio_net interface by name, else the
// first Ethernet one. It returns "" when there is none yet.
func PickInterface(sysClassNet string) string {
	ents, err := os.ReadDir(sysClassNet)
	if err != nil {
		return ""
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var ether string
	for _, n := range names {
		if n == "lo" {
			continue
		}
		drv, _ := os.Readlink(filepath.Join(sysClassNet, n, "device", "driver"))
		if filepath.Base(drv) == "virtio_net" {
			return n
		}
		if t, _ := os.ReadFile(filepath.Join(sysClassNet, n, "type")); strings.TrimSpace(string(t)) == "1" && ether == "" {
			ether = n
		}
	}
	return ether
}

// Static gives the member's plan address to the machine's first network
// interface, waiting up to wait for the interface to appear (its driver may
// still be probing). A member without an IP in the plan is not an error:
// the role then runs without network.
func Static(ctx context.Context, m plan.Member, wait time.Duration, out io.Writer) error {
	addr, ok, err := Address(m)
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(out, "network: the plan gives member %s no ip: no network\n", orNone(m.Name))
		return nil
	}
	if err := linkUp("lo", nil); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	deadline := time.Now().Add(wait)
	var ifname string
	for {
		if ifname = PickInterface("/sys/class/net"); ifname != "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no network interface appeared within %s (is virtio_net or the NIC's driver in the image?)", wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := linkUp(ifname, addr); err != nil {
		return fmt.Errorf("%s: %w", ifname, err)
	}
	fmt.Fprintf(out, "network: %s %s up (member %s)\n", ifname, addr, m.Name)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

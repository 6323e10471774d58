package netconf

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// IfcfgDir is where older RHEL keeps its network scripts' configuration.
const IfcfgDir = "/etc/sysconfig/network-scripts"

// ParseIfcfg reads ifcfg-* files (and their route-* files; name ->
// content) into links: DEVICE, TYPE (Ethernet, Bond, Vlan), HWADDR or
// MACADDR, MASTER with SLAVE=yes, BONDING_OPTS, VLAN=yes with PHYSDEV and
// VLAN_ID (or a DEVICE named PARENT.ID), IPADDR[N] with PREFIX[N] or
// NETMASK[N], GATEWAY, DNS1..DNS3, MTU.
func ParseIfcfg(files map[string][]byte) ([]Link, error) {
	var links []Link
	for _, name := range sortedKeys(files) {
		suffix, ok := strings.CutPrefix(name, "ifcfg-")
		if !ok || suffix == "lo" || ignoredScript(name) {
			continue
		}
		file := IfcfgDir + "/" + name
		var l *Link
		err := safely(file, func() error {
			var err error
			l, err = parseIfcfg(file, suffix, shellVars(files[name]))
			return err
		})
		if err != nil {
			return nil, err
		}
		if l == nil {
			continue
		}
		if r, ok := files["route-"+l.Name]; ok {
			if err := ifcfgRoutes(l, r); err != nil {
				return nil, fmt.Errorf("%s/route-%s: %w", IfcfgDir, l.Name, err)
			}
		}
		links = append(links, *l)
	}
	return links, nil
}

// ignoredScript skips the copies initscripts itself ignores.
func ignoredScript(name string) bool {
	for _, s := range []string{"~", ".bak", ".orig", ".rpmnew", ".rpmorig", ".rpmsave"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

func parseIfcfg(file, suffix string, v map[string]string) (*Link, error) {
	l := &Link{Name: v["DEVICE"], File: file}
	if l.Name == "" {
		l.Name = suffix
	}
	yes := func(k string) bool { return strings.EqualFold(v[k], "yes") }
	switch {
	case strings.EqualFold(v["TYPE"], "Bond") || yes("BONDING_MASTER"):
		l.Kind = BondKind
		for _, opt := range strings.Fields(v["BONDING_OPTS"]) {
			k, val, _ := strings.Cut(opt, "=")
			switch k {
			case "mode":
				l.BondMode = bondMode(val)
			case "miimon":
				n, err := strconv.Atoi(val)
				if err != nil {
					return nil, fmt.Errorf("%s: BONDING_OPTS miimon=%s is not a number", file, val)
				}
				l.MIIMon = n
			}
		}
	case strings.EqualFold(v["TYPE"], "Vlan") || yes("VLAN"):
		l.Kind = VLANKind
		l.Parent = v["PHYSDEV"]
		id := v["VLAN_ID"]
		if parent, tag, ok := strings.Cut(l.Name, "."); ok {
			if l.Parent == "" {
				l.Parent = parent
			}
			if id == "" {
				id = tag
			}
		}
		n, err := strconv.Atoi(id)
		if err != nil {
			return nil, fmt.Errorf("%s: VLAN %s has no VLAN_ID (or a DEVICE named PARENT.ID)", file, l.Name)
		}
		l.VLANID = n
	case v["TYPE"] == "" || strings.EqualFold(v["TYPE"], "Ethernet"):
		l.Kind = Ethernet
	default:
		return nil, nil // Bridge, InfiniBand, ...: not an interface we bring up
	}
	if yes("SLAVE") && v["MASTER"] != "" {
		l.Master = v["MASTER"]
	}
	for _, k := range []string{"HWADDR", "MACADDR"} {
		if s := v[k]; s != "" && l.MAC == nil {
			hw, err := parseMAC(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", file, k, err)
			}
			l.MAC = hw
		}
	}
	if s := v["MTU"]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%s: MTU=%s is not a number", file, s)
		}
		l.MTU = n
	}
	if b := strings.ToLower(v["BOOTPROTO"]); b == "dhcp" || b == "bootp" {
		return l, nil
	}
	for i := -1; i < 10; i++ {
		suf := ""
		if i >= 0 {
			suf = strconv.Itoa(i)
		}
		ip := v["IPADDR"+suf]
		if ip == "" {
			continue
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, fmt.Errorf("%s: IPADDR%s=%s is not an IP address", file, suf, ip)
		}
		bits := 24
		if p := v["PREFIX"+suf]; p != "" {
			if bits, err = strconv.Atoi(p); err != nil {
				return nil, fmt.Errorf("%s: PREFIX%s=%s is not a prefix length", file, suf, p)
			}
		} else if m := v["NETMASK"+suf]; m != "" {
			mask := net.ParseIP(m).To4()
			if mask == nil {
				return nil, fmt.Errorf("%s: NETMASK%s=%s is not a netmask", file, suf, m)
			}
			bits, _ = net.IPMask(mask).Size()
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return nil, fmt.Errorf("%s: IPADDR%s/PREFIX: %v", file, suf, err)
		}
		l.Addrs = append(l.Addrs, netip.PrefixFrom(a, p.Bits()))
	}
	if gw := v["GATEWAY"]; gw != "" {
		a, err := netip.ParseAddr(gw)
		if err != nil {
			return nil, fmt.Errorf("%s: GATEWAY=%s is not an IP address", file, gw)
		}
		l.setGateway(a)
	}
	for i := 1; i <= 3; i++ {
		if d := v["DNS"+strconv.Itoa(i)]; d != "" {
			a, err := netip.ParseAddr(d)
			if err != nil {
				return nil, fmt.Errorf("%s: DNS%d=%s is not an IP address", file, i, d)
			}
			l.DNS = append(l.DNS, a)
		}
	}
	return l, nil
}

// ifcfgRoutes reads a route-DEV file in either form initscripts reads:
// ADDRESSn=/NETMASKn=/GATEWAYn= variables, or `ip route` lines
// ("10.0.2.0/24 via 10.0.1.1 [dev eth0]", "default via 10.0.1.1").
func ifcfgRoutes(l *Link, raw []byte) error {
	v := shellVars(raw)
	if _, ok := v["ADDRESS0"]; ok {
		for i := 0; ; i++ {
			s := strconv.Itoa(i)
			addr, ok := v["ADDRESS"+s]
			if !ok {
				return nil
			}
			mask := net.ParseIP(v["NETMASK"+s]).To4()
			if mask == nil {
				mask = net.IPv4(255, 255, 255, 255).To4()
			}
			bits, _ := net.IPMask(mask).Size()
			to, err := parsePrefix(addr, bits)
			via, err2 := netip.ParseAddr(v["GATEWAY"+s])
			if err != nil || err2 != nil {
				return fmt.Errorf("route %d: ADDRESS%s=%s GATEWAY%s=%s is not a route", i, s, addr, s, v["GATEWAY"+s])
			}
			l.Routes = append(l.Routes, Route{To: to.Masked(), Via: via})
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		var via string
		for i := 1; i+1 < len(f); i++ {
			if f[i] == "via" {
				via = f[i+1]
			}
		}
		if via == "" {
			continue // on-link route
		}
		gw, err := netip.ParseAddr(via)
		if err != nil {
			return fmt.Errorf("%q: via %s is not an IP address", sc.Text(), via)
		}
		if isDefault(f[0]) {
			l.setGateway(gw)
			continue
		}
		to, err := parsePrefix(f[0], -1)
		if err != nil {
			return fmt.Errorf("%q: %s is not a network", sc.Text(), f[0])
		}
		l.Routes = append(l.Routes, Route{To: to.Masked(), Via: gw})
	}
	return sc.Err()
}

// shellVars reads KEY=value lines as initscripts source them: comments,
// blank lines and `export ` skipped, one level of single or double quotes
// removed.
func shellVars(raw []byte) map[string]string {
	v := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, val, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		} else if i := strings.Index(val, " #"); i >= 0 {
			val = strings.TrimSpace(val[:i])
		}
		v[strings.TrimSpace(k)] = val
	}
	return v
}

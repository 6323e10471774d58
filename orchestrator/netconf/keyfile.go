package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/ini.v1"
)

// KeyfileDir is where NetworkManager keeps its connection profiles.
const KeyfileDir = "/etc/NetworkManager/system-connections"

// keyfile is one connection profile's facts before names are resolved:
// a port names its bond, and a VLAN its parent, by interface name or by the
// connection's UUID.
type keyfile struct {
	Link
	uuid, id string
}

// ParseKeyfiles reads NetworkManager keyfiles (name -> content) into links:
// connection types ethernet, bond, vlan and bond ports (master= or
// controller=, slave-type= or port-type=bond), with [ipv4] addressN=,
// addresses=, gateway=, dns= and routeN=. Profiles that are not
// interfaces (wifi, bridge, ...) are skipped.
func ParseKeyfiles(files map[string][]byte) ([]Link, error) {
	var kfs []keyfile
	for _, name := range sortedKeys(files) {
		var kf *keyfile
		err := safely(name, func() error {
			var err error
			kf, err = parseKeyfile(name, files[name])
			return err
		})
		if err != nil {
			return nil, err
		}
		if kf != nil {
			kfs = append(kfs, *kf)
		}
	}
	// A profile is referred to by its interface name or its UUID.
	names := map[string]string{}
	for _, k := range kfs {
		names[k.uuid] = k.Name
		names[k.Name] = k.Name
	}
	var links []Link
	for _, k := range kfs {
		if k.Master != "" {
			if n, ok := names[k.Master]; ok {
				k.Master = n
			}
		}
		if k.Parent != "" {
			if n, ok := names[k.Parent]; ok {
				k.Parent = n
			}
		}
		links = append(links, k.Link)
	}
	return links, nil
}

func parseKeyfile(file string, raw []byte) (*keyfile, error) {
	f, err := ini.LoadSources(ini.LoadOptions{IgnoreInlineComment: true, AllowNonUniqueSections: false}, raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	get := func(section, key string) string {
		if !f.HasSection(section) {
			return ""
		}
		return strings.TrimSpace(f.Section(section).Key(key).String())
	}
	c := func(key string) string { return get("connection", key) }
	k := &keyfile{uuid: c("uuid"), id: c("id")}
	k.File = KeyfileDir + "/" + file
	k.Name = c("interface-name")
	if k.Name == "" {
		k.Name = k.id
	}
	if k.Name == "" {
		k.Name = strings.TrimSuffix(file, ".nmconnection")
	}
	master := c("controller")
	if master == "" {
		master = c("master")
	}
	portType := c("port-type")
	if portType == "" {
		portType = c("slave-type")
	}
	switch c("type") {
	case "ethernet", "802-3-ethernet":
		k.Kind = Ethernet
	case "bond":
		k.Kind = BondKind
		k.BondMode = bondMode(get("bond", "mode"))
		if v := get("bond", "miimon"); v != "" {
			if k.MIIMon, err = strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("%s: [bond] miimon=%s is not a number", k.File, v)
			}
		}
	case "vlan":
		k.Kind = VLANKind
		k.Parent = get("vlan", "parent")
		v := get("vlan", "id")
		if k.VLANID, err = strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("%s: [vlan] id=%s is not a number", k.File, v)
		}
	default:
		return nil, nil
	}
	if portType == "bond" && master != "" {
		k.Master = master
	}
	for _, sec := range []string{"ethernet", "802-3-ethernet"} {
		if v := get(sec, "mac-address"); v != "" {
			if k.MAC, err = keyfileMAC(v); err != nil {
				return nil, fmt.Errorf("%s: [%s] mac-address: %w", k.File, sec, err)
			}
		}
		if v := get(sec, "mtu"); v != "" {
			if k.MTU, err = strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("%s: [%s] mtu=%s is not a number", k.File, sec, v)
			}
		}
	}
	for _, sec := range []string{"ipv4", "ipv6"} {
		if !f.HasSection(sec) {
			continue
		}
		if err := keyfileIP(k, f.Section(sec)); err != nil {
			return nil, fmt.Errorf("%s: [%s] %w", k.File, sec, err)
		}
	}
	return k, nil
}

// keyfileIP reads an [ipv4] or [ipv6] section: addresses (address1=,
// addresses=, each ADDR/PREFIX[,GATEWAY]), gateway=, dns= (;-separated)
// and routes (routeN=DEST/PREFIX[,NEXTHOP[,METRIC]]).
func keyfileIP(k *keyfile, s *ini.Section) error {
	if m := s.Key("method").String(); m != "" && m != "manual" {
		return nil // auto (DHCP), link-local, disabled: no static address
	}
	for _, key := range s.Keys() {
		name, val := key.Name(), strings.TrimSpace(key.String())
		switch {
		case name == "gateway":
			gw, err := netip.ParseAddr(val)
			if err != nil {
				return fmt.Errorf("gateway=%s is not an IP address", val)
			}
			k.setGateway(gw)
		case name == "dns":
			for _, d := range strings.Split(val, ";") {
				if d = strings.TrimSpace(d); d == "" {
					continue
				}
				a, err := netip.ParseAddr(d)
				if err != nil {
					return fmt.Errorf("dns=%s: %q is not an IP address", val, d)
				}
				k.DNS = append(k.DNS, a)
			}
		case isIndexed(name, "address") || isIndexed(name, "addresses"):
			for _, one := range strings.Split(val, ";") {
				if one = strings.TrimSpace(one); one == "" {
					continue
				}
				addr, gw, _ := strings.Cut(one, ",")
				bits := 24 // NetworkManager's default without a prefix
				if strings.Contains(addr, ":") {
					bits = 64
				}
				p, err := parsePrefix(addr, bits)
				if err != nil {
					return fmt.Errorf("%s=%s: %v", name, val, err)
				}
				k.Addrs = append(k.Addrs, p)
				if gw != "" {
					a, err := netip.ParseAddr(strings.TrimSpace(gw))
					if err != nil {
						return fmt.Errorf("%s=%s: gateway %q is not an IP address", name, val, gw)
					}
					k.setGateway(a)
				}
			}
		case isIndexed(name, "route") || isIndexed(name, "routes"):
			f := strings.Split(val, ",")
			if len(f) < 2 {
				continue // a route without a next hop is on-link: the address's subnet
			}
			to, err1 := netip.ParsePrefix(strings.TrimSpace(f[0]))
			via, err2 := netip.ParseAddr(strings.TrimSpace(f[1]))
			if err1 != nil || err2 != nil {
				return fmt.Errorf("%s=%s is not DEST/PREFIX,NEXTHOP", name, val)
			}
			if to.Bits() == 0 {
				k.setGateway(via)
				continue
			}
			k.Routes = append(k.Routes, Route{To: to.Masked(), Via: via})
		}
	}
	return nil
}

// isIndexed matches base followed by digits only (address1, route12).
func isIndexed(name, base string) bool {
	rest, ok := strings.CutPrefix(name, base)
	if !ok {
		return false
	}
	if rest == "" {
		return base == "addresses" || base == "routes"
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

// keyfileMAC reads 52:54:00:12:34:56, or the old decimal byte list
// 82;84;0;18;52;86; older NetworkManager wrote.
func keyfileMAC(s string) (net.HardwareAddr, error) {
	if strings.Contains(s, ";") {
		var hw net.HardwareAddr
		for _, b := range strings.Split(strings.Trim(s, ";"), ";") {
			v, err := strconv.ParseUint(strings.TrimSpace(b), 10, 8)
			if err != nil {
				return nil, fmt.Errorf("%q is not a MAC address", s)
			}
			hw = append(hw, byte(v))
		}
		if len(hw) != 6 {
			return nil, fmt.Errorf("%q is not an Ethernet MAC address", s)
		}
		return hw, nil
	}
	return parseMAC(s)
}

// bondMode turns the kernel's numeric modes into names (mode=1 is
// active-backup, mode=4 is 802.3ad).
func bondMode(s string) string {
	switch s {
	case "1":
		return "active-backup"
	case "4":
		return "802.3ad"
	case "0":
		return "balance-rr"
	}
	return s
}

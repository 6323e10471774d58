package netconf

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// NetplanDir is where Ubuntu keeps its netplan configuration.
const NetplanDir = "/etc/netplan"

type netplanFile struct {
	Network struct {
		Ethernets map[string]netplanDev `yaml:"ethernets"`
		Bonds     map[string]netplanDev `yaml:"bonds"`
		VLANs     map[string]netplanDev `yaml:"vlans"`
	} `yaml:"network"`
}

type netplanDev struct {
	Match struct {
		MACAddress string `yaml:"macaddress"`
		Name       string `yaml:"name"`
	} `yaml:"match"`
	SetName    string    `yaml:"set-name"`
	MACAddress string    `yaml:"macaddress"`
	Addresses  yaml.Node `yaml:"addresses"`
	Gateway4   string    `yaml:"gateway4"`
	Gateway6   string    `yaml:"gateway6"`
	Routes     []struct {
		To  string `yaml:"to"`
		Via string `yaml:"via"`
	} `yaml:"routes"`
	Nameservers struct {
		Addresses []string `yaml:"addresses"`
	} `yaml:"nameservers"`
	MTU        int      `yaml:"mtu"`
	Interfaces []string `yaml:"interfaces"`
	Parameters struct {
		Mode               string `yaml:"mode"`
		MIIMonitorInterval string `yaml:"mii-monitor-interval"`
	} `yaml:"parameters"`
	ID   *int   `yaml:"id"`
	Link string `yaml:"link"`
}

// ParseNetplan reads netplan YAML files (name -> content, applied in name
// order, a later file's definition of a device replacing an earlier one's)
// into links: ethernets (matched by macaddress), bonds (interfaces,
// parameters.mode, mii-monitor-interval), vlans (id, link), with addresses,
// gateway4/gateway6, routes (to: default is the gateway), nameservers and mtu.
func ParseNetplan(files map[string][]byte) ([]Link, error) {
	type def struct {
		kind, file string
		dev        netplanDev
	}
	defs := map[string]def{}
	var order []string
	for _, name := range sortedKeys(files) {
		var doc netplanFile
		file := NetplanDir + "/" + name
		err := safely(file, func() error { return yaml.Unmarshal(files[name], &doc) })
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		for kind, devs := range map[string]map[string]netplanDev{Ethernet: doc.Network.Ethernets, BondKind: doc.Network.Bonds, VLANKind: doc.Network.VLANs} {
			for _, id := range sortedKeys(devs) {
				if _, seen := defs[id]; !seen {
					order = append(order, id)
				}
				defs[id] = def{kind: kind, file: file, dev: devs[id]}
			}
		}
	}
	var links []Link
	masters := map[string]string{}
	for _, id := range order {
		if d := defs[id]; d.kind == BondKind {
			for _, port := range d.dev.Interfaces {
				masters[port] = id
			}
		}
	}
	for _, id := range order {
		d := defs[id]
		l := Link{Name: id, Kind: d.kind, File: d.file, MTU: d.dev.MTU, Master: masters[id]}
		mac := d.dev.Match.MACAddress
		if mac == "" {
			mac = d.dev.MACAddress
		}
		if mac != "" && d.kind == Ethernet {
			var err error
			if l.MAC, err = parseMAC(mac); err != nil {
				return nil, fmt.Errorf("%s: %s: macaddress: %w", d.file, id, err)
			}
		}
		if d.kind == Ethernet && l.MAC == nil && d.dev.Match.Name != "" && !strings.ContainsAny(d.dev.Match.Name, "*?[") {
			l.Name = d.dev.Match.Name
		}
		switch d.kind {
		case BondKind:
			l.BondMode = bondMode(d.dev.Parameters.Mode)
			if v := d.dev.Parameters.MIIMonitorInterval; v != "" {
				ms, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("%s: bond %s: mii-monitor-interval %q is not a number of milliseconds", d.file, id, v)
				}
				l.MIIMon = ms
			}
		case VLANKind:
			if d.dev.ID == nil {
				return nil, fmt.Errorf("%s: vlan %s has no id", d.file, id)
			}
			l.VLANID, l.Parent = *d.dev.ID, d.dev.Link
		}
		if err := netplanIP(&l, d.dev); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", d.file, id, err)
		}
		links = append(links, l)
	}
	return links, nil
}

func netplanIP(l *Link, d netplanDev) error {
	// addresses: a list of "ADDR/PREFIX", or of one-key maps
	// {ADDR/PREFIX: {lifetime: 0, label: ...}}.
	for _, n := range d.Addresses.Content {
		s := n.Value
		if n.Kind == yaml.MappingNode && len(n.Content) > 0 {
			s = n.Content[0].Value
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("address %q is not ADDR/PREFIX", s)
		}
		l.Addrs = append(l.Addrs, p)
	}
	for _, gw := range []string{d.Gateway4, d.Gateway6} {
		if gw == "" {
			continue
		}
		a, err := netip.ParseAddr(gw)
		if err != nil {
			return fmt.Errorf("gateway %q is not an IP address", gw)
		}
		l.setGateway(a)
	}
	for _, r := range d.Routes {
		via, err := netip.ParseAddr(r.Via)
		if err != nil {
			return fmt.Errorf("route to %s: via %q is not an IP address", r.To, r.Via)
		}
		if isDefault(r.To) {
			l.setGateway(via)
			continue
		}
		to, err := netip.ParsePrefix(r.To)
		if err != nil {
			return fmt.Errorf("route to %q is not a network", r.To)
		}
		l.Routes = append(l.Routes, Route{To: to.Masked(), Via: via})
	}
	for _, s := range d.Nameservers.Addresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("nameserver %q is not an IP address", s)
		}
		l.DNS = append(l.DNS, a)
	}
	return nil
}

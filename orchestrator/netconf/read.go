package netconf

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// maxFile bounds each configuration file read from a master's root.
const maxFile = 1 << 20

// source is one kind of network configuration a master may have.
type source struct {
	dir   string
	keep  func(name string) bool
	parse func(map[string][]byte) ([]Link, error)
}

var sources = []source{
	{KeyfileDir, func(n string) bool { return strings.HasSuffix(n, ".nmconnection") }, ParseKeyfiles},
	{NetplanDir, func(n string) bool { return strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml") }, ParseNetplan},
	{IfcfgDir, func(n string) bool { return strings.HasPrefix(n, "ifcfg-") || strings.HasPrefix(n, "route-") }, ParseIfcfg},
}

// FromRoot reads the master's own network configuration from its root
// (read only, every path resolved inside the root) and returns the network
// that carries ip: NetworkManager keyfiles first, then netplan, then ifcfg
// files; the first that has ip as a static address wins.
func FromRoot(root *rootfs.Root, ip netip.Addr) (*Network, error) {
	var tried []string
	var errs []error
	for _, s := range sources {
		files, err := readDir(root, s.dir, s.keep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(files) == 0 {
			continue
		}
		tried = append(tried, s.dir)
		links, err := s.parse(files)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n, err := Resolve(links, ip, s.dir)
		if err == nil {
			return n, nil
		}
		errs = append(errs, err)
	}
	if len(tried) == 0 && len(errs) == 0 {
		return nil, fmt.Errorf("the master's root has no network configuration (%s, %s, %s): give members[].network in the plan",
			KeyfileDir, NetplanDir+"/*.yaml", IfcfgDir+"/ifcfg-*")
	}
	return nil, errors.Join(errs...)
}

// readDir reads the files of dir on the root that keep accepts; a missing
// dir is no file.
func readDir(root *rootfs.Root, dir string, keep func(string) bool) (map[string][]byte, error) {
	host, err := root.Resolve(dir)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(host)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s on the master's root: %w", dir, err)
	}
	files := map[string][]byte{}
	for _, e := range ents {
		if e.IsDir() || !keep(e.Name()) {
			continue
		}
		b, err := root.ReadFile(dir+"/"+e.Name(), maxFile)
		if err != nil {
			return nil, fmt.Errorf("read %s/%s on the master's root: %w", dir, e.Name(), err)
		}
		files[e.Name()] = b
	}
	return files, nil
}

// FromPlan returns the network members[].network gives (nil when it gives
// none). The plan was validated.
func FromPlan(m plan.Member) (*Network, error) {
	pn := m.Network
	if pn == nil {
		return nil, nil
	}
	ip, err := netip.ParseAddr(m.IP)
	if err != nil {
		return nil, fmt.Errorf("member %s: ip %q is not an IP address", m.Name, m.IP)
	}
	bits := m.Prefix
	if bits == 0 {
		bits = 24
		if ip.Is6() {
			bits = 64
		}
	}
	n := &Network{Address: netip.PrefixFrom(ip, bits), MTU: pn.MTU, Source: "the plan (members[].network of " + m.Name + ")"}
	if i := pn.Interface; i != nil {
		n.Port = &Port{Name: i.Name}
		if i.MAC != "" {
			n.Port.MAC, _ = net.ParseMAC(i.MAC)
		}
	}
	if b := pn.Bond; b != nil {
		n.Bond = &Bond{Name: b.Name, Mode: b.Mode, MIIMon: b.MIIMon}
		if n.Bond.Name == "" {
			n.Bond.Name = "bond0"
		}
		for _, mac := range b.Members {
			hw, _ := net.ParseMAC(mac)
			n.Bond.Ports = append(n.Bond.Ports, Port{MAC: hw})
		}
	}
	if pn.VLAN != nil {
		n.VLAN = pn.VLAN.ID
	}
	if pn.Gateway != "" {
		n.Gateway, _ = netip.ParseAddr(pn.Gateway)
	}
	for _, r := range pn.Routes {
		to, err1 := netip.ParsePrefix(r.To)
		via, err2 := netip.ParseAddr(r.Via)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("member %s: route to %s via %s does not parse", m.Name, r.To, r.Via)
		}
		n.Routes = append(n.Routes, Route{To: to, Via: via})
	}
	for _, d := range pn.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("member %s: dns %q is not an IP address", m.Name, d)
		}
		n.DNS = append(n.DNS, a)
	}
	return n, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package netconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParsers: any file is links or an error for each parser, never a
// panic, and Resolve on what they read never panics either.
func FuzzParsers(f *testing.F) {
	for _, dir := range []string{"keyfile-bond-vlan", "keyfile-ethernet", "netplan-bond-vlan", "netplan-ethernet", "ifcfg-bond-vlan"} {
		ents, _ := os.ReadDir(filepath.Join("testdata", dir))
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join("testdata", dir, e.Name()))
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, parse := range map[string]func(map[string][]byte) ([]Link, error){
			"a.nmconnection": ParseKeyfiles, "a.yaml": ParseNetplan, "ifcfg-a": ParseIfcfg,
		} {
			links, err := parse(map[string][]byte{name: b, "route-a": b})
			if err != nil {
				continue
			}
			for _, l := range links {
				for _, a := range l.Addrs {
					if n, err := Resolve(links, a.Addr(), "x"); err == nil && n.Address.Addr() != a.Addr() {
						t.Fatalf("%s: resolved %s for %s", name, n.Address, a)
					}
				}
			}
			Resolve(links, netip.MustParseAddr("10.0.0.1"), "x")
		}
	})
}

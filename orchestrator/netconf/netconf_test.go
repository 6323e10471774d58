package netconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// fakeRoot makes a master root holding testdata/sample under dir (as the
// master sees it) and returns it.
func fakeRoot(t *testing.T, sample, dir string) *rootfs.Root {
	t.Helper()
	base := t.TempDir()
	dst := filepath.Join(base, dir)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join("testdata", sample))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("testdata", sample, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := rootfs.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFromRoot(t *testing.T) {
	for _, tc := range []struct {
		sample, dir, ip, want, source string
	}{
		{"keyfile-bond-vlan", KeyfileDir, "10.0.100.10",
			"bond bond0 (active-backup: 52:54:00:aa:00:01, 52:54:00:aa:00:02) vlan 100 → 10.0.100.10/24 gw 10.0.100.1, 10.20.0.0/16 via 10.0.100.254, 10.30.0.0/16 via 10.0.100.254 mtu 9000 dns 10.0.100.53 10.0.100.54",
			KeyfileDir + "/bond0.100.nmconnection, " + KeyfileDir + "/bond0.nmconnection, " + KeyfileDir + "/bond0-slave-ens3.nmconnection, " + KeyfileDir + "/bond0-slave-ens4.nmconnection"},
		{"keyfile-ethernet", KeyfileDir, "192.168.122.10",
			"NIC 52:54:00:12:34:56 → 192.168.122.10/24 gw 192.168.122.1 dns 192.168.122.1",
			KeyfileDir + "/Wired connection 1.nmconnection"},
		// Dual stack: the gateway of the member address's IP version.
		{"keyfile-ethernet", KeyfileDir, "fd00:122::10",
			"NIC 52:54:00:12:34:56 → fd00:122::10/64 gw fd00:122::1 dns 192.168.122.1",
			KeyfileDir + "/Wired connection 1.nmconnection"},
		{"netplan-bond-vlan", NetplanDir, "10.1.20.11",
			"bond bond0 (802.3ad: 3c:ec:ef:00:00:01, 3c:ec:ef:00:00:02) vlan 20 → 10.1.20.11/24 gw 10.1.20.1, 10.99.0.0/16 via 10.1.20.254 mtu 9000 dns 10.1.20.53 10.1.20.54",
			NetplanDir + "/00-installer-config.yaml"},
		// The later file's definition of ens3 replaces the earlier one's.
		{"netplan-ethernet", NetplanDir, "172.16.0.12",
			"NIC fa:16:3e:00:00:0b → 172.16.0.12/20 gw 172.16.0.254 mtu 1450",
			NetplanDir + "/99-override.yaml"},
		{"ifcfg-bond-vlan", IfcfgDir, "10.2.30.12",
			"bond bond0 (active-backup: 00:25:90:aa:bb:01, 00:25:90:aa:bb:02) vlan 30 → 10.2.30.12/24 gw 10.2.30.1, 10.40.0.0/16 via 10.2.30.254 mtu 1500 dns 10.2.30.53 10.2.30.54",
			IfcfgDir + "/ifcfg-bond0.30, " + IfcfgDir + "/ifcfg-bond0, " + IfcfgDir + "/ifcfg-em1, " + IfcfgDir + "/ifcfg-em2"},
	} {
		t.Run(tc.sample, func(t *testing.T) {
			n, err := FromRoot(fakeRoot(t, tc.sample, tc.dir), netip.MustParseAddr(tc.ip))
			if err != nil {
				t.Fatal(err)
			}
			if got := n.Describe(); got != tc.want {
				t.Errorf("network:\n got %s\nwant %s", got, tc.want)
			}
			if n.Source != tc.source {
				t.Errorf("source:\n got %s\nwant %s", n.Source, tc.source)
			}
		})
	}
}

func TestFromRootErrors(t *testing.T) {
	r := fakeRoot(t, "keyfile-ethernet", KeyfileDir)
	_, err := FromRoot(r, netip.MustParseAddr("10.9.9.9"))
	if err == nil || !strings.Contains(err.Error(), "no interface in "+KeyfileDir+" has the static address 10.9.9.9 (addresses found: enp1s0 192.168.122.10/24, enp1s0 fd00:122::10/64)") {
		t.Errorf("unknown ip: %v", err)
	}
	empty, err := rootfs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromRoot(empty, netip.MustParseAddr("10.9.9.9")); err == nil || !strings.Contains(err.Error(), "has no network configuration") {
		t.Errorf("empty root: %v", err)
	}
}

// A keyfile directory that is an absolute symlink resolves inside the
// master's root, as the master sees it, never on the rescue machine.
func TestFromRootStaysInRoot(t *testing.T) {
	r := fakeRoot(t, "keyfile-ethernet", "/srv/nm")
	if err := os.MkdirAll(filepath.Join(r.Path, "etc/NetworkManager"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/srv/nm", filepath.Join(r.Path, KeyfileDir)); err != nil {
		t.Fatal(err)
	}
	n, err := FromRoot(r, netip.MustParseAddr("192.168.122.10"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Port == nil || n.Port.MAC.String() != "52:54:00:12:34:56" {
		t.Fatalf("network %s", n.Describe())
	}
	outside := t.TempDir()
	os.Remove(filepath.Join(r.Path, KeyfileDir))
	if err := os.Symlink(outside, filepath.Join(r.Path, KeyfileDir)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(outside, "x.nmconnection"), []byte("[connection]\ntype=ethernet\n[ipv4]\nmethod=manual\naddress1=192.168.122.10/24\n"), 0o600)
	if _, err := FromRoot(r, netip.MustParseAddr("192.168.122.10")); err == nil {
		t.Fatalf("a keyfile outside the root was read")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func(map[string][]byte) ([]Link, error)
		file  string
		body  string
		want  string
	}{
		{"keyfile mac", ParseKeyfiles, "a.nmconnection", "[connection]\ntype=ethernet\n[ethernet]\nmac-address=zz\n", `a.nmconnection: [ethernet] mac-address: "zz" is not an Ethernet MAC address`},
		{"keyfile address", ParseKeyfiles, "a.nmconnection", "[connection]\ntype=ethernet\n[ipv4]\nmethod=manual\naddress1=10.0.0.300/24\n", "address1=10.0.0.300/24"},
		{"keyfile vlan id", ParseKeyfiles, "a.nmconnection", "[connection]\ntype=vlan\n[vlan]\nid=x\n", "[vlan] id=x is not a number"},
		{"netplan yaml", ParseNetplan, "a.yaml", "network: [", "a.yaml"},
		{"netplan address", ParseNetplan, "a.yaml", "network:\n  ethernets:\n    e: {addresses: [10.0.0.1]}\n", `address "10.0.0.1" is not ADDR/PREFIX`},
		{"netplan vlan", ParseNetplan, "a.yaml", "network:\n  vlans:\n    v: {link: e}\n", "vlan v has no id"},
		{"ifcfg ip", ParseIfcfg, "ifcfg-eth0", "IPADDR=10.0.0\n", "IPADDR=10.0.0 is not an IP address"},
		{"ifcfg vlan", ParseIfcfg, "ifcfg-v", "VLAN=yes\nDEVICE=v\n", "has no VLAN_ID"},
	} {
		_, err := tc.parse(map[string][]byte{tc.file: []byte(tc.body)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestResolveRefusesOtherBondModes(t *testing.T) {
	links, err := ParseIfcfg(map[string][]byte{
		"ifcfg-bond0": []byte("DEVICE=bond0\nTYPE=Bond\nBONDING_OPTS=\"mode=balance-alb\"\nIPADDR=10.0.0.5\nPREFIX=24\n"),
		"ifcfg-em1":   []byte("DEVICE=em1\nMASTER=bond0\nSLAVE=yes\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(links, netip.MustParseAddr("10.0.0.5"), IfcfgDir); err == nil || !strings.Contains(err.Error(), "has mode balance-alb") {
		t.Fatalf("balance-alb bond: %v", err)
	}
}

func TestFromPlan(t *testing.T) {
	p, err := plan.Parse([]byte(`version: 1
cluster: {name: c}
survivor: m0
members:
- name: m0
  ip: 10.0.1.10
  peerURL: "https://10.0.1.10:2380"
  network:
    bond: {mode: active-backup, members: ["52:54:00:00:00:01", "52:54:00:00:00:02"], miimon: 50}
    vlan: {id: 7}
    gateway: 10.0.1.1
    routes: [{to: 10.0.2.0/24, via: 10.0.1.254}]
    dns: [10.0.1.53]
- {name: m1, ip: 10.0.1.11, peerURL: "https://10.0.1.11:2380"}
`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := FromPlan(p.Members[0])
	if err != nil {
		t.Fatal(err)
	}
	want := "bond bond0 (active-backup: 52:54:00:00:00:01, 52:54:00:00:00:02) vlan 7 → 10.0.1.10/24 gw 10.0.1.1, 10.0.2.0/24 via 10.0.1.254 dns 10.0.1.53"
	if got := n.Describe(); got != want || n.Bond.MIIMon != 50 {
		t.Errorf("got %s (miimon %d)\nwant %s", got, n.Bond.MIIMon, want)
	}
	if n, err := FromPlan(p.Members[1]); n != nil || err != nil {
		t.Errorf("member without network: %v %v", n, err)
	}
}

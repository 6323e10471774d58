package plan

import (
	"strings"
	"testing"
)

const netPlan = `
version: 1
cluster: {name: ocp}
survivor: m0
members:
- name: m0
  ip: 10.0.1.10
  peerURL: "https://10.0.1.10:2380"
  network:
    bond: {name: bond0, mode: active-backup, miimon: 100, members: ["52:54:00:00:00:01", "52:54:00:00:00:02"]}
    vlan: {id: 100, parent: bond0}
    mtu: 9000
    gateway: 10.0.1.1
    routes: [{to: 10.0.9.0/24, via: 10.0.1.254}]
    dns: [10.0.1.53]
- name: m1
  ip: 10.0.2.11
  prefix: 24
  peerURL: "https://10.0.2.11:2380"
  network:
    interface: {mac: "52:54:00:00:00:03"}
    gateway: 10.0.2.1
`

func TestNetworkParses(t *testing.T) {
	p, err := Parse([]byte(netPlan))
	if err != nil {
		t.Fatal(err)
	}
	n := p.Members[0].Network
	if n.Bond.Mode != "active-backup" || len(n.Bond.Members) != 2 || n.VLAN.ID != 100 || n.MTU != 9000 || n.Routes[0].Via != "10.0.1.254" || n.DNS[0] != "10.0.1.53" {
		t.Fatalf("network = %+v", n)
	}
	out, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(out); err != nil {
		t.Fatalf("written plan does not read back: %v\n%s", err, out)
	}
}

func TestNetworkErrors(t *testing.T) {
	for _, tc := range []struct{ network, want string }{
		{`{}`, "give interface (mac: or name:) or bond"},
		{`{interface: {mac: "52:54:00:00:00:09"}, bond: {mode: 802.3ad, members: ["52:54:00:00:00:01"]}}`, "not both"},
		{`{interface: {}}`, "interface: give mac:"},
		{`{interface: {mac: "52:54:00:00:00"}}`, "is not an Ethernet MAC address"},
		{`{interface: {name: "a/b"}}`, "is not an interface name"},
		{`{bond: {mode: balance-rr, members: ["52:54:00:00:00:01"]}}`, `bond.mode "balance-rr": use active-backup or 802.3ad`},
		{`{bond: {mode: 802.3ad, members: []}}`, "bond.members is empty"},
		{`{bond: {mode: 802.3ad, members: ["52:54:00:00:00:01", "52-54-00-00-00-01"]}}`, "is listed twice"},
		{`{bond: {mode: 802.3ad, members: ["52:54:00:00:00:01"], miimon: -1}}`, "bond.miimon -1"},
		{`{interface: {name: eth0}, vlan: {id: 4095}}`, "vlan.id 4095 is not a VLAN tag"},
		{`{interface: {name: eth0}, vlan: {id: 5, parent: eth1}}`, `vlan.parent "eth1" is not the interface or bond`},
		{`{interface: {name: eth0}, mtu: 20}`, "mtu 20"},
		{`{interface: {name: eth0}, gateway: 10.0.2.1}`, "gateway 10.0.2.1 is not on the member's subnet 10.0.1.0/24"},
		{`{interface: {name: eth0}, gateway: fd00::1}`, "not of one IP version"},
		{`{interface: {name: eth0}, gateway: 10.0.1.10}`, "is the member's own address"},
		{`{interface: {name: eth0}, gateway: x}`, `gateway "x" is not an IP address`},
		{`{interface: {name: eth0}, routes: [{to: 10.0.2.5/24, via: 10.0.1.1}]}`, "has host bits set: give the network, 10.0.2.0/24"},
		{`{interface: {name: eth0}, routes: [{to: nope, via: 10.0.1.1}]}`, `routes[0].to "nope"`},
		{`{interface: {name: eth0}, routes: [{to: 10.0.2.0/24, via: 10.0.3.1}]}`, "routes[0].via 10.0.3.1 is not on the member's subnet"},
		{`{interface: {name: eth0}, dns: [dns.example]}`, `dns[0] "dns.example" is not an IP address`},
		{`{interface: {name: eth0}, surprise: 1}`, "surprise"},
	} {
		doc := "version: 1\ncluster: {name: c}\nsurvivor: m0\nmembers:\n- {name: m0, ip: 10.0.1.10, peerURL: \"https://10.0.1.10:2380\", network: " + tc.network + "}\n"
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("network %s: error %v, want %q", tc.network, err, tc.want)
		}
	}
	noIP := "version: 1\ncluster: {name: c}\nsurvivor: m0\nmembers:\n- {name: m0, peerURL: \"https://10.0.1.10:2380\", network: {interface: {name: eth0}}}\n"
	if _, err := Parse([]byte(noIP)); err == nil || !strings.Contains(err.Error(), "the member has no ip") {
		t.Errorf("network without ip: %v", err)
	}
}

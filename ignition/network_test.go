package ignition

import (
	"strings"
	"testing"
)

// The plan's members[].network reaches the rescue image: the config
// carries the plan, and Read returns the network as the plan gave it.
// A bad network is refused when the config is built.
func TestConfigCarriesNetwork(t *testing.T) {
	planYAML := `version: 1
cluster: {name: c}
survivor: m0
members:
- name: m0
  ip: 10.0.1.10
  peerURL: "https://10.0.1.10:2380"
  network:
    bond: {mode: 802.3ad, members: ["52:54:00:00:00:01", "52:54:00:00:00:02"]}
    vlan: {id: 42}
    gateway: 10.0.1.1
    dns: [10.0.1.53]
`
	raw, err := Build(Options{Plan: []byte(planYAML), Role: Role{Role: RoleVerify, Member: "m0"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Read(raw)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Plan.Members[0].Network
	if n == nil || n.Bond == nil || n.Bond.Mode != "802.3ad" || len(n.Bond.Members) != 2 || n.VLAN.ID != 42 || n.Gateway != "10.0.1.1" || n.DNS[0] != "10.0.1.53" {
		t.Fatalf("network read back: %+v", n)
	}
	bad := strings.Replace(planYAML, "id: 42", "id: 5000", 1)
	if _, err := Build(Options{Plan: []byte(bad), Role: Role{Role: RoleVerify, Member: "m0"}}); err == nil || !strings.Contains(err.Error(), "vlan.id 5000") {
		t.Fatalf("a bad network was carried: %v", err)
	}
}

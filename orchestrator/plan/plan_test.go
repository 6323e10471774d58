package plan

import (
	"strings"
	"testing"
)

const good = `
version: 1
cluster: {name: ocp, domain: ocp.example.com}
profile: openshift-4.3
survivor: m0
members:
- {name: m0, ip: 10.0.0.10, peerURL: "https://etcd-0.ocp.example.com:2380"}
- {name: m1, ip: 10.0.0.11, peerURL: "https://etcd-1.ocp.example.com:2380"}
signer: {address: "https://10.0.0.10:9943", ttl: 90m}
`

func TestParseFillsDefaults(t *testing.T) {
	p, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Cluster.Token != "etcd-cluster-1" || p.Signer.TTL.Minutes() != 90 || p.SurvivorMember().Name != "m0" {
		t.Fatalf("parsed %+v", p)
	}
	if got := InitialCluster(p.Members...); got != "m0=https://etcd-0.ocp.example.com:2380,m1=https://etcd-1.ocp.example.com:2380" {
		t.Fatalf("InitialCluster = %s", got)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	bad := strings.NewReplacer(
		"version: 1", "version: 2",
		"survivor: m0", "survivor: m9",
		`name: m1, ip: 10.0.0.11, peerURL: "https://etcd-1.ocp.example.com:2380"`, `name: m0, ip: ten, peerURL: "etcd-1:2380"`,
		"openshift-4.3", "rke",
	).Replace(good)
	_, err := Parse([]byte(bad + "etcdVersion: 3.2.32\n"))
	if err == nil {
		t.Fatal("bad plan accepted")
	}
	for _, want := range []string{"etcdVersion: etcd 3.2.32 is older", "version is 2", `survivor "m9" is not one of the members`, `"m0" is listed twice`, `ip "ten"`, "must start with https://", `profile "rke" is unknown`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte(good + "surprise: 1\n")); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("unknown field accepted: %v", err)
	}
}

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
	_, err := Parse([]byte(bad + "etcdVersion: 3.2.32\nsource: newest\n"))
	if err == nil {
		t.Fatal("bad plan accepted")
	}
	for _, want := range []string{"etcdVersion: etcd 3.2.32 is older", "version is 2", `survivor "m9" is not one of the members`, `"m0" is listed twice`, `ip "ten"`, "must start with https://", `profile "rke" is unknown`, `source "newest" is unknown`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte(good + "surprise: 1\n")); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("unknown field accepted: %v", err)
	}
}

func TestCheckPeerURL(t *testing.T) {
	for _, s := range []string{
		"https://10.0.0.1:2380", "https://10.0.0.1:2380/", "http://127.0.0.1:1", "https://etcd-0.example.com:65535",
		"https://[fd00::1]:2380", "HTTPS://Etcd-0.Example.com:2380",
	} {
		if err := CheckPeerURL(s); err != nil {
			t.Errorf("CheckPeerURL(%q): %v", s, err)
		}
	}
	for s, want := range map[string]string{
		"":                                "is empty",
		"10.0.0.1:2380":                   "must start with https://",
		"unix://10.0.0.1:2380":            "must start with https://",
		"https://10.0.0.1":                "has no port",
		"https://10.0.0.1:0":              "port \"0\"",
		"https://10.0.0.1:99999":          "port \"99999\"",
		"https://10.0.0.1:-1":             "port",
		"https://10.0.0.1:02380":          "port \"02380\"",
		"https://:2380":                   "has no host",
		"https:///x":                      "has no host",
		"https:10.0.0.1:2380":             "must start with https://",
		"https://10.0.0.1:2380/etcd":      "has a path",
		"https://10.0.0.1:2380?x=1":       "has a query",
		"https://10.0.0.1:2380?":          "has a query",
		"https://10.0.0.1:2380#peer":      "has a fragment",
		"https://user:pw@10.0.0.1:2380":   "user info",
		"https://10.0.0.1:2380 ":          "spaces",
		"https://10.0.0.1:2380\n":         "control",
		"https://fd00::1:2380":            "port",
		"https://[10.0.0.1]:2380":         "does not parse",
		"https://[fe80::1%25eth0]:2380":   "zone",
		"https://10.0.0.1:2380,https://x": "port",
	} {
		err := CheckPeerURL(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPeerURL(%q) = %v, want an error with %q", s, err, want)
		}
	}
}

func TestCheckMemberName(t *testing.T) {
	for _, n := range []string{"m0", "etcd-member-master-0.example.com", "master_0"} {
		if err := CheckMemberName(n); err != nil {
			t.Errorf("CheckMemberName(%q): %v", n, err)
		}
	}
	for _, n := range []string{"", "a,b", "a=b", "a b", "a\tb", "a\x01", "m0\n"} {
		if err := CheckMemberName(n); err == nil {
			t.Errorf("CheckMemberName(%q) accepted", n)
		}
	}
}

func TestValidateRefusesWhatRestoreRefuses(t *testing.T) {
	for change, want := range map[[2]string]string{
		{`peerURL: "https://etcd-1.ocp.example.com:2380"`, `peerURL: "https://etcd-1.ocp.example.com:0"`}:      `port "0"`,
		{`peerURL: "https://etcd-1.ocp.example.com:2380"`, `peerURL: "https://etcd-1.ocp.example.com:99999"`}:  `port "99999"`,
		{`peerURL: "https://etcd-1.ocp.example.com:2380"`, `peerURL: "https://:2380"`}:                         "has no host",
		{`peerURL: "https://etcd-1.ocp.example.com:2380"`, `peerURL: "https://etcd-1.ocp.example.com:2380/x"`}: "has a path",
		{`peerURL: "https://etcd-1.ocp.example.com:2380"`, `peerURL: "https://etcd-1.ocp.example.com:2380?a"`}: "has a query",
		{`peerURL: "https://etcd-1.ocp.example.com:2380"`, `peerURL: "https://u@etcd-1.ocp.example.com:2380"`}: "user info",
		{`peerURL: "https://etcd-1.ocp.example.com:2380"`, `peerURL: "https://etcd-0.ocp.example.com:2380"`}:   "share the peer URL host:port etcd-0.ocp.example.com:2380",
		{`peerURL: "https://etcd-1.ocp.example.com:2380"`, `peerURL: "https://ETCD-0.ocp.example.com:2380/"`}:  "share the peer URL host:port",
		{"ttl: 90m", "ttl: -1h"}: "signer.ttl -1h0m0s is negative",
		{`address: "https://10.0.0.10:9943"`, `address: "http://10.0.0.10:9943"`}:    "must start with https://",
		{`address: "https://10.0.0.10:9943"`, `address: "https://10.0.0.10:9943/x"`}: "has a path",
		{"name: m1,", `name: "m 1",`}:                                 "may not hold",
		{"name: m1,", `name: "m1,m2",`}:                               "may not hold",
		{"name: m1,", `name: "m1=x",`}:                                "may not hold",
		{"ip: 10.0.0.11", "ip: 10.0.0.10"}:                            "members m0 and m1 share the ip 10.0.0.10",
		{"ip: 10.0.0.11", "ip: 10.0.0.010"}:                           `ip "10.0.0.010" is not an IP address`,
		{"name: m1,", "name: m1, dnsName: etcd-0.ocp.example.com., "}: "share the dnsName etcd-0.ocp.example.com",
		{"name: m1,", "name: m1, host: Master-0, "}:                   "share the host master-0",
	} {
		src := strings.Replace(good, change[0], change[1], 1)
		src = strings.Replace(src, "name: m0,", "name: m0, host: master-0, dnsName: etcd-0.ocp.example.com,", 1)
		if src == good {
			t.Fatalf("change %q does not apply", change)
		}
		_, err := Parse([]byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("with %q: err = %v, want %q", change[1], err, want)
		}
	}
	// Loopback addresses are shared by the members of a one-machine cluster.
	lab := strings.NewReplacer("ip: 10.0.0.10", "ip: 127.0.0.1", "ip: 10.0.0.11", "ip: 127.0.0.1").Replace(good)
	if _, err := Parse([]byte(lab)); err != nil {
		t.Errorf("members sharing a loopback IP: %v", err)
	}
}

func TestParseInitialClusterIsStrict(t *testing.T) {
	if _, err := ParseInitialCluster("m0=https://10.0.0.1:2380,m1=https://10.0.0.2:2380"); err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]string{
		"m0=https://10.0.0.1:0":                              `port "0"`,
		"m0=https://10.0.0.1:2380/x":                         "has a path",
		"m 0=https://10.0.0.1:2380":                          "may not hold",
		"m0=https://10.0.0.1:2380,m1=https://10.0.0.1:2380/": "twice",
		"m0=https://10.0.0.1:2380,m0=https://10.0.0.2:2380":  "twice",
		"m0=https://10.0.0.1:2380=x":                         "port",
		"m0":                                                 "not name=url",
	} {
		_, err := ParseInitialCluster(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseInitialCluster(%q) = %v, want %q", s, err, want)
		}
	}
}

package rfc2136_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/dnstest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb/rfc2136"
)

func node(name, ip string) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
}

// TestUpdate: the survivor keeps etcd-0, the two new masters have new
// addresses: etcd-1 changes, etcd-2 is created, the SRV record is
// replaced, other records stay; an unsigned update is refused.
func TestUpdate(t *testing.T) {
	const zone = "ocp.example.com"
	s := dnstest.Start(t, zone,
		"etcd-0.ocp.example.com. 60 IN A 10.0.0.10",
		"etcd-1.ocp.example.com. 60 IN A 10.0.9.91",
		"_etcd-server-ssl._tcp.ocp.example.com. 60 IN SRV 0 10 2380 etcd-0.ocp.example.com.",
		"_etcd-server-ssl._tcp.ocp.example.com. 60 IN SRV 0 10 2380 etcd-1.ocp.example.com.",
		"api.ocp.example.com. 60 IN A 10.0.0.5",
	)
	ch, err := dnslb.Compute(dnslb.Input{
		Cluster: "ocp", Domain: zone,
		Members: []dnslb.Member{{Node: "master-0"}, {Node: "master-1"}, {Node: "master-2"}},
		Nodes:   []corev1.Node{node("master-0", "10.0.0.10"), node("master-1", "10.0.0.11"), node("master-2", "10.0.0.12")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch.Lookup(ctx, &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.Addr)
	}})
	var tbl strings.Builder
	ch.WriteTable(&tbl)
	t.Logf("plan:\n%s", tbl.String())
	actions := map[string]string{}
	for _, r := range ch.DNS.Records {
		actions[r.Name] = r.Action
	}
	wantActions := map[string]string{
		"etcd-0.ocp.example.com.":                dnslb.ActionKeep,
		"etcd-1.ocp.example.com.":                dnslb.ActionUpdate,
		"etcd-2.ocp.example.com.":                dnslb.ActionCreate,
		"_etcd-server-ssl._tcp.ocp.example.com.": dnslb.ActionUpdate,
	}
	for name, want := range wantActions {
		if actions[name] != want {
			t.Errorf("%s: action %q, want %q", name, actions[name], want)
		}
	}

	before := map[string][]string{
		"etcd-1": dnstest.Query(t, s.Addr, "etcd-1."+zone, dns.TypeA),
		"etcd-2": dnstest.Query(t, s.Addr, "etcd-2."+zone, dns.TypeA),
		"srv":    dnstest.Query(t, s.Addr, "_etcd-server-ssl._tcp."+zone, dns.TypeSRV),
	}
	t.Logf("before: %v", before)

	err = rfc2136.Apply(ctx, rfc2136.Config{Server: s.Addr, Zone: zone}, ch.DNS)
	if err == nil || !strings.Contains(err.Error(), "REFUSED") || !strings.Contains(err.Error(), "TSIG key") {
		t.Fatalf("unsigned update: %v, want REFUSED with a hint", err)
	}
	if got := dnstest.Query(t, s.Addr, "etcd-1."+zone, dns.TypeA); !slices.Equal(got, before["etcd-1"]) {
		t.Fatalf("a refused update changed etcd-1 to %v", got)
	}

	alg, name, secret, err := rfc2136.ParseTSIG("hmac-sha256:" + dnstest.KeyName + ":" + dnstest.KeySecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := rfc2136.Apply(ctx, rfc2136.Config{Server: s.Addr, TSIGName: name, TSIGSecret: secret, TSIGAlgorithm: alg, TCP: true}, ch.DNS); err != nil {
		t.Fatal(err)
	}
	after := map[string][]string{
		"etcd-0": dnstest.Query(t, s.Addr, "etcd-0."+zone, dns.TypeA),
		"etcd-1": dnstest.Query(t, s.Addr, "etcd-1."+zone, dns.TypeA),
		"etcd-2": dnstest.Query(t, s.Addr, "etcd-2."+zone, dns.TypeA),
		"srv":    dnstest.Query(t, s.Addr, "_etcd-server-ssl._tcp."+zone, dns.TypeSRV),
		"api":    dnstest.Query(t, s.Addr, "api."+zone, dns.TypeA),
	}
	t.Logf("after: %v", after)
	want := map[string][]string{
		"etcd-0": {"10.0.0.10"},
		"etcd-1": {"10.0.0.11"},
		"etcd-2": {"10.0.0.12"},
		"srv":    {"0 10 2380 etcd-0.ocp.example.com.", "0 10 2380 etcd-1.ocp.example.com.", "0 10 2380 etcd-2.ocp.example.com."},
		"api":    {"10.0.0.5"},
	}
	for k, v := range want {
		if !slices.Equal(after[k], v) {
			t.Errorf("%s after the update: %v, want %v", k, after[k], v)
		}
	}

	// A record outside the zone is refused before anything is sent.
	err = rfc2136.Apply(ctx, rfc2136.Config{Server: s.Addr, Zone: "other.example.com"}, ch.DNS)
	if err == nil || !strings.Contains(err.Error(), "outside zone") {
		t.Fatalf("update outside the zone: %v", err)
	}
}

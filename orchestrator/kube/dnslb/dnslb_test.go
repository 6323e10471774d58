package dnslb_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb"
)

func node(name, ip string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "203.0.113.1"}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func TestCompute(t *testing.T) {
	nodes := []corev1.Node{node("m0", "10.0.0.10"), node("m1", "10.0.0.11"), node("m2", "fd00::12")}
	c, err := dnslb.Compute(dnslb.Input{Domain: "ocp.example.com.", Nodes: nodes,
		Members: []dnslb.Member{{Node: "m0"}, {Node: "m1", DNSName: "etcd-7.ocp.example.com"}, {Node: "m2"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range c.DNS.Records {
		got[r.Name+" "+r.Type] = strings.Join(r.Values, ",")
	}
	want := map[string]string{
		"etcd-0.ocp.example.com. A":                  "10.0.0.10",
		"etcd-7.ocp.example.com. A":                  "10.0.0.11",
		"etcd-2.ocp.example.com. AAAA":               "fd00::12",
		"_etcd-server-ssl._tcp.ocp.example.com. SRV": "0 10 2380 etcd-0.ocp.example.com.,0 10 2380 etcd-7.ocp.example.com.,0 10 2380 etcd-2.ocp.example.com.",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(c.LB.Pools) != 2 || strings.Join(c.LB.Pools[0].Targets, ",") != "10.0.0.10:6443,10.0.0.11:6443,[fd00::12]:6443" || c.LB.Pools[1].Port != 22623 {
		t.Errorf("pools: %+v", c.LB.Pools)
	}

	k, err := dnslb.Compute(dnslb.Input{Domain: "k.example.com", Profile: dnslb.ProfileKubeadm, Nodes: nodes, Members: []dnslb.Member{{Node: "m0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(k.DNS.Records) != 0 || len(k.LB.Pools) != 1 {
		t.Errorf("kubeadm: %+v", k)
	}

	_, err = dnslb.Compute(dnslb.Input{Domain: "ocp.example.com", Nodes: []corev1.Node{node("m0", "")},
		Members: []dnslb.Member{{Node: "m0"}, {Node: "m9"}}})
	for _, want := range []string{"node m0 has no InternalIP", "node m9 is not registered"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := dnslb.Compute(dnslb.Input{Members: []dnslb.Member{{Node: "m0"}}}); err == nil || !strings.Contains(err.Error(), "--domain") {
		t.Errorf("no domain: %v", err)
	}
}

func TestRunHook(t *testing.T) {
	c, err := dnslb.Compute(dnslb.Input{Cluster: "ocp", Domain: "ocp.example.com", Nodes: []corev1.Node{node("m0", "10.0.0.10")}, Members: []dnslb.Member{{Node: "m0"}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	got := filepath.Join(dir, "lb.json")
	var out strings.Builder
	if err := dnslb.RunHook(context.Background(), "lb", `cat > "`+got+`"; echo "hook saw $ETCD_RESCUE_HOOK"`, c.LB, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "hook saw lb") {
		t.Errorf("hook output %q", out.String())
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	var lb dnslb.LBChange
	if err := json.Unmarshal(b, &lb); err != nil {
		t.Fatal(err)
	}
	if lb.Kind != "lb" || lb.Version != dnslb.Version || lb.Pools[0].Targets[0] != "10.0.0.10:6443" {
		t.Errorf("hook read %s", b)
	}
	err = dnslb.RunHook(context.Background(), "dns", `echo "zone not found" >&2; exit 3`, c.DNS, &out)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "zone not found") {
		t.Errorf("failing hook: %v", err)
	}
}

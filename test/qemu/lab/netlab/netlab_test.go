package netlab

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNetAndDNS makes a lab network, answers A and SRV questions on its
// bridge through a resolver that dials inside the namespace, and leaves no
// namespace behind.
func TestNetAndDNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the lab network needs root (network namespaces)")
	}
	n, err := New("10.89.0.1/24", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	d, err := n.StartDNS()
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	d.SetA("etcd-0.lab.example", "10.89.0.10")
	d.SetEtcdSRV("lab.example", 2380, "etcd-0.lab.example")
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return n.Dial(ctx, network, "10.89.0.1:53")
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "etcd-0.lab.example")
	if err != nil || len(addrs) != 1 || addrs[0] != "10.89.0.10" {
		t.Errorf("A etcd-0.lab.example: %v %v", addrs, err)
	}
	_, srvs, err := r.LookupSRV(ctx, "etcd-server-ssl", "tcp", "lab.example")
	if err != nil || len(srvs) != 1 || srvs[0].Target != "etcd-0.lab.example." || srvs[0].Port != 2380 {
		t.Errorf("SRV: %v %v", srvs, err)
	}
	if _, err := r.LookupHost(ctx, "nobody.lab.example"); err == nil {
		t.Errorf("an unknown name resolved")
	}
	d.SetA("etcd-0.lab.example", "10.89.0.20")
	if addrs, _ := r.LookupHost(ctx, "etcd-0.lab.example"); len(addrs) != 1 || addrs[0] != "10.89.0.20" {
		t.Errorf("after the DNS correction: %v", addrs)
	}
	if _, err := n.Tap("52:54:00:89:00:01"); err != nil {
		t.Error(err)
	}
	d.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), n.NS) {
		t.Errorf("namespace %s left behind", n.NS)
	}
}

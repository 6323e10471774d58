package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	certv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/dnstest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/kubetest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/csr"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb"
)

// runCLI runs the etcd-rescue binary and returns its combined output and
// whether it exited 0.
func runCLI(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "HTTP_PROXY=", "https_proxy=", "http_proxy=")
	out, err := cmd.CombinedOutput()
	t.Logf("$ etcd-rescue %s\n%s", strings.Join(args, " "), out)
	return string(out), err == nil
}

// clientCSR creates node's kubelet client CSR, as its bootstrapper would.
func clientCSR(t *testing.T, s *kubetest.Server, node string) *certv1.CertificateSigningRequest {
	t.Helper()
	r, err := s.CreateCSR(t, kubetest.BootstrapToken, kubetest.CSRSpec{CN: "system:node:" + node, O: "system:nodes",
		Signer: certv1.KubeAPIServerClientKubeletSignerName, Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// servingCSR creates node's kubelet serving CSR, as its kubelet would.
func servingCSR(t *testing.T, s *kubetest.Server, node, ip string) *certv1.CertificateSigningRequest {
	t.Helper()
	r, err := s.CreateCSR(t, kubetest.NodeIdentity(node), kubetest.CSRSpec{CN: "system:node:" + node, O: "system:nodes",
		DNS: []string{node}, IPs: []string{ip},
		Signer: certv1.KubeletServingSignerName, Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// csrState reads a CSR's state: pending, approved, denied or failed.
func csrState(t *testing.T, s *kubetest.Server, name string) string {
	t.Helper()
	r, err := s.Typed(t).Certificates.CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return csr.State(r)
}

// TestKubeCommands runs approve-csrs, wait-nodes, wait-api, dns-lb with
// the shipped RFC 2136 hook, and remove-signer as a user would, against a
// real kube-apiserver and a DNS server on 127.0.0.1.
func TestKubeCommands(t *testing.T) {
	s := kubetest.Start(t)
	s.AllowCSRCreation(t)
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-0", InternalIP: "10.0.0.10", Ready: true})
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-1", InternalIP: "10.0.0.11", Ready: false})
	kc := s.Kubeconfig
	good := clientCSR(t, s, "master-1")
	bad := clientCSR(t, s, "intruder")
	state := func(name string) string { return csrState(t, s, name) }

	t.Run("approve-csrs", func(t *testing.T) {
		out, ok := runCLI(t, "approve-csrs", "--kubeconfig", kc, "--nodes", "master-1", "--dry-run")
		if !ok || !strings.Contains(out, good.Name) || !strings.Contains(out, "would approve") || !strings.Contains(out, `node "intruder" is not one of the planned nodes`) {
			t.Fatalf("dry run output:\n%s", out)
		}
		if state(good.Name) != "pending" || state(bad.Name) != "pending" {
			t.Fatal("--dry-run approved a CSR")
		}
		out, ok = runCLI(t, "approve-csrs", "--kubeconfig", kc, "--nodes", "master-1", "-o", "json")
		var res csr.Result
		if !ok || json.Unmarshal([]byte(out), &res) != nil || !slices.Equal(res.Approved, []string{good.Name}) {
			t.Fatalf("approve output:\n%s", out)
		}
		if state(good.Name) != "approved" || state(bad.Name) != "pending" {
			t.Fatalf("after approve-csrs: good %s, bad %s", state(good.Name), state(bad.Name))
		}
		if _, ok := runCLI(t, "approve-csrs", "--kubeconfig", kc); ok {
			t.Fatal("approve-csrs without --nodes or --plan succeeded")
		}
		// A later --watch run counts the client CSR approved above and
		// ends once the node's serving CSR is approved too.
		serving := servingCSR(t, s, "master-1", "10.0.0.11")
		out, ok = runCLI(t, "approve-csrs", "--kubeconfig", kc, "--nodes", "master-1", "--watch", "--interval", "200ms", "--timeout", "30s")
		if !ok || !strings.Contains(out, "every planned node has its client and serving CSR approved") || state(serving.Name) != "approved" {
			t.Fatalf("approve-csrs --watch:\n%s", out)
		}
		if state(bad.Name) != "pending" {
			t.Fatal("--watch approved the intruder's CSR")
		}
	})

	t.Run("wait-nodes", func(t *testing.T) {
		out, ok := runCLI(t, "wait-nodes", "--kubeconfig", kc, "--nodes", "master-0,master-1", "--timeout", "2s", "--interval", "200ms")
		if ok || !strings.Contains(out, "1/2 master nodes Ready") || !strings.Contains(out, "master-1   NotReady") {
			t.Fatalf("wait-nodes with a NotReady master:\n%s", out)
		}
		s.SetNodeReady(t, "master-1", true)
		out, ok = runCLI(t, "wait-nodes", "--kubeconfig", kc, "--nodes", "master-0,master-1", "--timeout", "30s", "--interval", "200ms")
		if !ok || !strings.Contains(out, "2/2 master nodes Ready") || !strings.Contains(out, "master-1   Ready") {
			t.Fatalf("wait-nodes:\n%s", out)
		}
	})

	t.Run("wait-api", func(t *testing.T) {
		if out, ok := runCLI(t, "wait-api", "--kubeconfig", kc, "--timeout", "30s"); !ok || !strings.Contains(out, "credentials accepted") {
			t.Fatalf("wait-api:\n%s", out)
		}
	})

	t.Run("dns-lb with the rfc2136 hook", func(t *testing.T) {
		const zone = "ocp.example.com"
		d := dnstest.Start(t, zone, "etcd-0.ocp.example.com. 60 IN A 10.0.0.10", "etcd-1.ocp.example.com. 60 IN A 10.0.9.91")
		lbFile := filepath.Join(t.TempDir(), "lb.json")
		hook := binary + " dns-hook rfc2136 --server " + d.Addr + " --tsig-key " + dnstest.KeyName + ":" + dnstest.KeySecret
		args := []string{"dns-lb", "--kubeconfig", kc, "--domain", zone, "--nodes", "master-0,master-1", "--resolver", d.Addr,
			"--dns-hook", hook, "--lb-hook", "cat > " + lbFile}

		out, ok := runCLI(t, append(args, "--dry-run")...)
		if !ok || !strings.Contains(out, "10.0.9.91") || !strings.Contains(out, "update") || !strings.Contains(out, "no hook run") {
			t.Fatalf("dry run:\n%s", out)
		}
		if got := dnstest.Query(t, d.Addr, "etcd-1."+zone, dns.TypeA); !slices.Equal(got, []string{"10.0.9.91"}) {
			t.Fatalf("dry run changed etcd-1 to %v", got)
		}
		if _, err := os.Stat(lbFile); err == nil {
			t.Fatal("dry run ran the lb hook")
		}

		if out, ok := runCLI(t, args...); !ok {
			t.Fatalf("dns-lb:\n%s", out)
		}
		if got := dnstest.Query(t, d.Addr, "etcd-1."+zone, dns.TypeA); !slices.Equal(got, []string{"10.0.0.11"}) {
			t.Fatalf("etcd-1 after the hook: %v", got)
		}
		if got := dnstest.Query(t, d.Addr, "_etcd-server-ssl._tcp."+zone, dns.TypeSRV); len(got) != 2 {
			t.Fatalf("SRV after the hook: %v", got)
		}
		b, err := os.ReadFile(lbFile)
		if err != nil {
			t.Fatal(err)
		}
		var lb dnslb.LBChange
		if err := json.Unmarshal(b, &lb); err != nil || lb.Pools[0].Name != "api" || !slices.Equal(lb.Pools[0].Targets, []string{"10.0.0.10:6443", "10.0.0.11:6443"}) {
			t.Fatalf("lb hook got %s (%v)", b, err)
		}
		out, ok = runCLI(t, "dns-lb", "--kubeconfig", kc, "--domain", zone, "--nodes", "master-0,master-1", "--resolver", d.Addr, "--dry-run")
		if !ok || strings.Contains(out, "update") || strings.Contains(out, "create") {
			t.Fatalf("after the hook every record should be kept:\n%s", out)
		}
	})

	t.Run("plan", func(t *testing.T) {
		planFile := filepath.Join(t.TempDir(), "plan.yaml")
		plan := `version: 1
cluster: {name: ocp, domain: ocp.example.com}
survivor: etcd-member-master-0
members:
- {name: etcd-member-master-0, host: master-0, dnsName: etcd-0.ocp.example.com, peerURL: "https://etcd-0.ocp.example.com:2380"}
- {name: etcd-member-master-1, host: master-1, dnsName: etcd-1.ocp.example.com, peerURL: "https://etcd-1.ocp.example.com:2380"}
`
		if err := os.WriteFile(planFile, []byte(plan), 0o644); err != nil {
			t.Fatal(err)
		}
		// The survivor's node is not a new master: only master-1 is planned.
		out, ok := runCLI(t, "approve-csrs", "--kubeconfig", kc, "--plan", planFile, "--dry-run")
		if !ok || !strings.Contains(out, "planned nodes master-1") {
			t.Fatalf("approve-csrs --plan:\n%s", out)
		}
		out, ok = runCLI(t, "dns-lb", "--kubeconfig", kc, "--plan", planFile, "--lookup=false", "-o", "json", "--dry-run")
		var ch dnslb.Change
		if !ok || json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &ch) != nil || len(ch.DNS.Records) != 3 || ch.DNS.Records[1].Name != "etcd-1.ocp.example.com." || ch.DNS.Records[1].Values[0] != "10.0.0.11" {
			t.Fatalf("dns-lb --plan:\n%s", out)
		}
		if out, ok := runCLI(t, "wait-nodes", "--kubeconfig", kc, "--plan", planFile, "--timeout", "10s"); !ok || !strings.Contains(out, "2/2 master nodes Ready") {
			t.Fatalf("wait-nodes --plan:\n%s", out)
		}
	})

	t.Run("remove-signer", func(t *testing.T) {
		out, ok := runCLI(t, "remove-signer", "--kubeconfig", kc, "--timeout", "10s")
		if !ok || !strings.Contains(out, "not present") || !strings.Contains(out, "signer: gone") {
			t.Fatalf("remove-signer:\n%s", out)
		}
	})
}

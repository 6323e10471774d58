package csr_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/kubetest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/csr"
)

var (
	clientUsages  = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}
	clientUsagesK = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageClientAuth}
	servingUsages = []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageServerAuth}
)

func clientSpec(node string) kubetest.CSRSpec {
	return kubetest.CSRSpec{CN: "system:node:" + node, O: "system:nodes", Signer: certv1.KubeAPIServerClientKubeletSignerName, Usages: clientUsages}
}

func servingSpec(node, ip string) kubetest.CSRSpec {
	return kubetest.CSRSpec{CN: "system:node:" + node, O: "system:nodes", DNS: []string{node}, IPs: []string{ip}, Signer: certv1.KubeletServingSignerName, Usages: servingUsages}
}

type csrCase struct {
	name string
	id   kubetest.Identity
	spec kubetest.CSRSpec
	// want is the verdict, and a piece of the refusal reason.
	approve bool
	reason  string
}

func cases() []csrCase {
	with := func(s kubetest.CSRSpec, f func(*kubetest.CSRSpec)) kubetest.CSRSpec { f(&s); return s }
	alice := kubetest.Identity{User: "alice", Groups: []string{"system:authenticated"}}
	return []csrCase{
		{"client by bootstrap token", kubetest.BootstrapToken, clientSpec("master-1"), true, ""},
		{"client by node-bootstrapper SA, RSA-style usages", kubetest.BootstrapSA, with(clientSpec("master-2"), func(s *kubetest.CSRSpec) { s.Usages = clientUsagesK }), true, ""},
		{"serving by the node", kubetest.NodeIdentity("master-1"), servingSpec("master-1", "10.0.0.11"), true, ""},
		{"serving by the node, name and hostname", kubetest.NodeIdentity("master-2"), with(servingSpec("master-2", "10.0.0.12"), func(s *kubetest.CSRSpec) { s.DNS = append(s.DNS, "master-2.example.internal") }), true, ""},

		{"wrong CN", kubetest.BootstrapToken, with(clientSpec("master-1"), func(s *kubetest.CSRSpec) { s.CN = "master-1" }), false, "is not system:node:<node name>"},
		{"wrong O", kubetest.BootstrapToken, with(clientSpec("master-1"), func(s *kubetest.CSRSpec) { s.O = "system:masters" }), false, "subject O"},
		{"no O", kubetest.BootstrapToken, with(clientSpec("master-1"), func(s *kubetest.CSRSpec) { s.O = "" }), false, "subject O"},
		{"serving with an extra SAN", kubetest.NodeIdentity("master-1"), with(servingSpec("master-1", "10.0.0.11"), func(s *kubetest.CSRSpec) { s.DNS = append(s.DNS, "api.example.com") }), false, "api.example.com are not names or addresses"},
		{"serving with another node's IP", kubetest.NodeIdentity("master-1"), servingSpec("master-1", "10.0.0.12"), false, "10.0.0.12 are not names or addresses"},
		{"serving with an email SAN", kubetest.NodeIdentity("master-1"), with(servingSpec("master-1", "10.0.0.11"), func(s *kubetest.CSRSpec) { s.Emails = []string{"root@master-1"} }), false, "email or URI"},
		{"other signer", kubetest.BootstrapToken, with(clientSpec("master-1"), func(s *kubetest.CSRSpec) { s.Signer = certv1.KubeAPIServerClientSignerName }), false, "is neither"},
		{"custom signer", kubetest.BootstrapToken, with(clientSpec("master-1"), func(s *kubetest.CSRSpec) { s.Signer = "example.com/etcd" }), false, "is neither"},
		{"node not in the plan", kubetest.BootstrapToken, clientSpec("worker-9"), false, `node "worker-9" is not one of the planned nodes`},
		{"client with server auth usage", kubetest.BootstrapToken, with(clientSpec("master-1"), func(s *kubetest.CSRSpec) { s.Usages = append(s.Usages, certv1.UsageServerAuth) }), false, "not allowed for a kubelet client"},
		{"serving without server auth", kubetest.NodeIdentity("master-1"), with(servingSpec("master-1", "10.0.0.11"), func(s *kubetest.CSRSpec) { s.Usages = clientUsages }), false, `lack "server auth"`},
		{"serving requested by another node", kubetest.NodeIdentity("master-2"), servingSpec("master-1", "10.0.0.11"), false, "not by the node itself"},
		{"client from a non-bootstrap user", alice, clientSpec("master-1"), false, "not by the node bootstrapper"},
		{"client renewal by the node itself", kubetest.NodeIdentity("master-1"), clientSpec("master-1"), false, "not by the node bootstrapper"},
		{"client with SANs", kubetest.BootstrapToken, with(clientSpec("master-1"), func(s *kubetest.CSRSpec) { s.DNS = []string{"master-1"} }), false, "carries SANs"},
		{"serving of a planned node not registered yet", kubetest.NodeIdentity("master-3"), servingSpec("master-3", "10.0.0.13"), false, "not registered yet"},
	}
}

// TestRules runs every case through a real kube-apiserver: the CSRs are
// created as kubelets create them (real keys, the bootstrap identities by
// impersonation), then approve-csrs' dry run, a real pass, and a --watch
// pass that completes a node registered later. Only the good CSRs ever get
// the Approved condition, and kube-controller-manager's signer issues
// certificates for exactly those.
func TestRules(t *testing.T) {
	s := kubetest.Start(t)
	s.StartSigner(t)
	s.AllowCSRCreation(t, "alice")
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-1", InternalIP: "10.0.0.11", Hostname: "master-1", Ready: true})
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-2", InternalIP: "10.0.0.12", Hostname: "master-2.example.internal", Ready: false})
	s.CreateNode(t, kubetest.NodeSpec{Name: "worker-9", Role: "worker", InternalIP: "10.0.0.99", Ready: true})
	cl := s.Clients(t)
	ctx := kubetest.Context(t, 3*time.Minute)

	want := map[string]csrCase{} // CSR name → case
	var good, bad []string
	for _, c := range cases() {
		r, err := s.CreateCSR(t, c.id, c.spec)
		if err != nil {
			t.Fatalf("%s: the API server refused the CSR: %v", c.name, err)
		}
		if c.id.User != r.Spec.Username {
			t.Fatalf("%s: CSR username %q, want the impersonated %q", c.name, r.Spec.Username, c.id.User)
		}
		want[r.Name] = c
		if c.approve {
			good = append(good, r.Name)
		} else {
			bad = append(bad, r.Name)
		}
	}
	if len(bad) < 8 {
		t.Fatalf("only %d bad CSRs reached the API server; want at least 8", len(bad))
	}
	planned := []string{"master-1", "master-2", "master-3"}

	// Dry run: verdicts and reasons, nothing approved.
	var out bytes.Buffer
	dry := &csr.Approver{API: cl, Planned: planned, DryRun: true, Out: &out}
	res, err := dry.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Approved) != 0 {
		t.Fatalf("dry run approved %v", res.Approved)
	}
	checkDecisions(t, res.Decisions, want)
	if n := strings.Count(out.String(), "would approve"); n != len(good) {
		t.Errorf("dry run table shows %d 'would approve', want %d:\n%s", n, len(good), out.String())
	}
	t.Logf("dry run:\n%s", out.String())
	assertApproved(t, ctx, s, nil)

	// A real pass approves exactly the good ones; a second pass nothing.
	a := &csr.Approver{API: cl, Planned: planned}
	res, err = a.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !sameNames(res.Approved, good) {
		t.Fatalf("approved %v, want %v", res.Approved, good)
	}
	assertApproved(t, ctx, s, good)
	res, err = a.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Approved) != 0 {
		t.Fatalf("second pass approved %v", res.Approved)
	}
	if m := a.Missing(); len(m) != 2 || m[0] != "master-3 client" || m[1] != "master-3 serving" {
		t.Fatalf("missing after the pass = %v, want master-3's client and serving", m)
	}

	// --watch: master-3's client CSR arrives, then the node registers,
	// which makes its earlier serving CSR checkable; watch ends when the
	// node has both.
	var watchOut bytes.Buffer
	w := &csr.Approver{API: cl, Planned: planned, Out: &watchOut}
	done := make(chan error, 1)
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	go func() { done <- w.Watch(wctx, 300*time.Millisecond) }()
	time.Sleep(time.Second)
	r3, err := s.CreateCSR(t, kubetest.BootstrapSA, clientSpec("master-3"))
	if err != nil {
		t.Fatal(err)
	}
	waitApproved(t, ctx, s, r3.Name)
	select {
	case err := <-done:
		t.Fatalf("watch ended before master-3 had a serving certificate: %v", err)
	default:
	}
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-3", InternalIP: "10.0.0.13", Ready: false})
	if err := <-done; err != nil {
		t.Fatalf("watch: %v\n%s", err, watchOut.String())
	}
	t.Logf("watch:\n%s", watchOut.String())
	var serving3 string
	for name, c := range want {
		if c.name == "serving of a planned node not registered yet" {
			serving3 = name
		}
	}
	approved := append(append([]string{}, good...), r3.Name, serving3)
	assertApproved(t, ctx, s, approved)

	// The controller-manager's signer issues a certificate for every
	// approved CSR, with the subject, SANs and usages the rules checked;
	// no refused CSR gets one.
	want[r3.Name] = csrCase{name: "master-3 client", spec: clientSpec("master-3"), approve: true}
	for _, name := range approved {
		cert := waitCertificate(t, ctx, s, name)
		c := want[name]
		if cert.Subject.CommonName != c.spec.CN || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "system:nodes" {
			t.Errorf("%s: certificate subject %s", c.name, cert.Subject)
		}
		wantEKU := x509.ExtKeyUsageClientAuth
		if c.spec.Signer == certv1.KubeletServingSignerName {
			wantEKU = x509.ExtKeyUsageServerAuth
		}
		if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != wantEKU || !slices.Equal(cert.DNSNames, c.spec.DNS) {
			t.Errorf("%s: certificate usages %v SANs %v, want [%v] %v", c.name, cert.ExtKeyUsage, cert.DNSNames, wantEKU, c.spec.DNS)
		}
	}
	l, err := s.Typed(t).Certificates.CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l.Items {
		if !slices.Contains(approved, r.Name) && len(r.Status.Certificate) > 0 {
			t.Errorf("refused CSR %s (%s) has a certificate", r.Name, want[r.Name].name)
		}
	}
	t.Logf("%d approved CSRs signed by kube-controller-manager; %d refused CSRs have no certificate", len(approved), len(l.Items)-len(approved))
}

// waitCertificate waits until the signer has issued the CSR's certificate.
func waitCertificate(t *testing.T, ctx context.Context, s *kubetest.Server, name string) *x509.Certificate {
	t.Helper()
	for {
		r, err := s.Typed(t).Certificates.CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Status.Certificate) > 0 {
			blk, _ := pem.Decode(r.Status.Certificate)
			if blk == nil {
				t.Fatalf("CSR %s: certificate is not PEM", name)
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		for _, c := range r.Status.Conditions {
			if c.Type == certv1.CertificateFailed {
				t.Fatalf("CSR %s: signing failed: %s", name, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("CSR %s: no certificate issued", name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func checkDecisions(t *testing.T, ds []csr.Decision, want map[string]csrCase) {
	t.Helper()
	seen := map[string]bool{}
	for _, d := range ds {
		c, ok := want[d.Name]
		if !ok {
			t.Errorf("decision on unknown CSR %s", d.Name)
			continue
		}
		seen[d.Name] = true
		if d.Approve != c.approve {
			t.Errorf("%s (%s): approve=%v, want %v; reason: %s", c.name, d.Name, d.Approve, c.approve, d.Reason)
		}
		if d.Reason == "" {
			t.Errorf("%s: no reason", c.name)
		}
		if !c.approve && !strings.Contains(d.Reason, c.reason) {
			t.Errorf("%s: reason %q lacks %q", c.name, d.Reason, c.reason)
		}
	}
	for name, c := range want {
		if !seen[name] {
			t.Errorf("%s (%s): no decision", c.name, name)
		}
	}
}

// assertApproved checks that exactly the named CSRs carry Approved.
func assertApproved(t *testing.T, ctx context.Context, s *kubetest.Server, names []string) {
	t.Helper()
	l, err := s.Typed(t).Certificates.CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var approved []string
	for _, r := range l.Items {
		if csr.State(&r) == "approved" {
			approved = append(approved, r.Name)
		}
	}
	if !sameNames(approved, names) {
		t.Fatalf("CSRs with Approved: %v, want exactly %v", approved, names)
	}
}

func waitApproved(t *testing.T, ctx context.Context, s *kubetest.Server, name string) {
	t.Helper()
	for {
		r, err := s.Typed(t).Certificates.CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if csr.State(r) == "approved" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("CSR %s not approved", name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

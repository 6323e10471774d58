package signer

import (
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// The issued certificates copy the key usages and lifetime of the
// survivor's own certificate of the same kind.
func TestShapesCopyTheSurvivorsCertificates(t *testing.T) {
	root := t.TempDir()
	prof, _ := profile.Get(profile.OpenShift43)
	p := testPlan(t)
	ca, err := pki.NewCA("etcd-signer", 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := pki.Request{CommonName: "system:etcd-peer:etcd-0.test.example.com", Validity: 2 * 365 * 24 * time.Hour}.Template()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	key := ecKey(t)
	certPEM, err := ca.Sign(tmpl, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.MarshalKeyPEM(key)
	c, k := prof.MemberCert("peer", CertIdentity(p.SurvivorMember()))
	if err := pki.WriteFiles(filepath.Join(root, c), certPEM, filepath.Join(root, k), keyPEM); err != nil {
		t.Fatal(err)
	}
	shapes := ShapesFromRoot(root, prof, p.SurvivorMember())
	peer := shapes["peer"]
	if peer.From == "" || peer.KeyUsage != x509.KeyUsageDigitalSignature || peer.Validity < 2*365*24*time.Hour {
		t.Fatalf("peer shape %+v", peer)
	}
	if shapes["server"].From != "" || shapes["server"].Validity != pki.DefaultValidity {
		t.Fatalf("server shape without a certificate: %+v", shapes["server"])
	}

	m := p.Members[1]
	dns, ips := AllowedSANs(prof, "peer", m)
	csr := &x509.CertificateRequest{DNSNames: dns, IPAddresses: ips}
	got := template("peer", m, csr, peer)
	if got.KeyUsage != x509.KeyUsageDigitalSignature || got.NotAfter.Sub(got.NotBefore) < 2*365*24*time.Hour || got.Subject.Organization[0] != "system:etcd-peers" {
		t.Fatalf("template %v %v %v", got.KeyUsage, got.NotAfter.Sub(got.NotBefore), got.Subject)
	}
	if !containsIP(got.IPAddresses, "127.0.0.1") {
		t.Errorf("IPs %v", got.IPAddresses)
	}
	// Peer certificates get no in-cluster service names; server ones do on OpenShift.
	for _, d := range dns {
		if d == "etcd.kube-system.svc" {
			t.Error("peer SANs include a service name")
		}
	}
	sdns, _ := AllowedSANs(prof, "server", m)
	found := false
	for _, d := range sdns {
		found = found || d == "etcd.kube-system.svc"
	}
	if !found {
		t.Errorf("server SANs %v lack the service names", sdns)
	}
}

func containsIP(ips []net.IP, s string) bool {
	for _, ip := range ips {
		if ip.String() == s {
			return true
		}
	}
	return false
}

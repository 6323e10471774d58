package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// Kinds are the certificate kinds an etcd member needs, in request order.
var Kinds = []string{"peer", "server", "metric"}

// organization is the O of each kind, as OpenShift's etcd signer sets it.
var organization = map[string]string{
	"peer":   "system:etcd-peers",
	"server": "system:etcd-servers",
	"metric": "system:etcd-metrics",
}

// CertIdentity is the member part of certificate names: the member's etcd
// DNS name when the plan gives one (OpenShift names its files and subjects
// after ${ETCD_DNS_NAME}), otherwise the member name.
func CertIdentity(m plan.Member) string {
	if m.DNSName != "" {
		return m.DNSName
	}
	return m.Name
}

// CommonName is the subject CN of a member's certificate of a kind.
func CommonName(kind string, m plan.Member) string {
	return "system:etcd-" + kind + ":" + CertIdentity(m)
}

// openshiftServiceNames are the in-cluster names OpenShift 4.3 puts into the
// etcd server and metric certificates.
var openshiftServiceNames = []string{
	"etcd.kube-system.svc", "etcd.kube-system.svc.cluster.local",
	"etcd.openshift-etcd.svc", "etcd.openshift-etcd.svc.cluster.local",
}

// AllowedSANs returns the DNS names and IPs a member may have in a
// certificate of a kind: its host, etcd DNS name, IP, the hosts of its peer
// and client URLs, and loopback; server and metric certificates on
// OpenShift also the etcd service names.
func AllowedSANs(p *profile.Profile, kind string, m plan.Member) (dns []string, ips []net.IP) {
	seenDNS := map[string]bool{}
	seenIP := map[string]bool{}
	add := func(h string) {
		if h == "" {
			return
		}
		if ip := net.ParseIP(h); ip != nil {
			if !seenIP[ip.String()] {
				seenIP[ip.String()] = true
				ips = append(ips, ip)
			}
			return
		}
		h = strings.ToLower(h)
		if !seenDNS[h] {
			seenDNS[h] = true
			dns = append(dns, h)
		}
	}
	add(m.Host)
	add(m.DNSName)
	add(m.IP)
	add(urlHost(m.PeerURL))
	add(urlHost(m.ClientURL))
	add("localhost")
	add("127.0.0.1")
	add("::1")
	if p != nil && p.Name == profile.OpenShift43 && kind != "peer" {
		for _, n := range openshiftServiceNames {
			add(n)
		}
	}
	return dns, ips
}

// DefaultSANs is what a member asks for when it has no better idea: its
// host, etcd DNS name, IP, URL hosts and loopback.
func DefaultSANs(m plan.Member) (dns []string, ips []net.IP) {
	return AllowedSANs(nil, "peer", m)
}

func urlHost(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// checkCSR verifies a CSR's signature, key strength, subject and SANs against
// the plan. The error text is the refusal reason sent to the client.
func checkCSR(csr *x509.CertificateRequest, kind string, m plan.Member, prof *profile.Profile) error {
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%s CSR signature does not verify: %v", kind, err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return fmt.Errorf("%s CSR: %v", kind, err)
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != CommonName(kind, m) {
		return fmt.Errorf("%s CSR asks for common name %q; member %s gets %q", kind, cn, m.Name, CommonName(kind, m))
	}
	if len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return fmt.Errorf("%s CSR asks for URI or email SANs, which etcd certificates do not carry", kind)
	}
	dns, ips := AllowedSANs(prof, kind, m)
	okDNS := map[string]bool{}
	for _, d := range dns {
		okDNS[d] = true
	}
	okIP := map[string]bool{}
	for _, ip := range ips {
		okIP[ip.String()] = true
	}
	var bad []string
	for _, d := range csr.DNSNames {
		if !okDNS[strings.ToLower(d)] {
			bad = append(bad, d)
		}
	}
	for _, ip := range csr.IPAddresses {
		if !okIP[ip.String()] {
			bad = append(bad, ip.String())
		}
	}
	if len(bad) > 0 {
		var allowed []string
		allowed = append(allowed, dns...)
		for _, ip := range ips {
			allowed = append(allowed, ip.String())
		}
		return fmt.Errorf("%s CSR asks for SAN %s, not allowed for member %s by the plan (allowed: %s)",
			kind, strings.Join(bad, ", "), m.Name, strings.Join(allowed, ", "))
	}
	return nil
}

// checkKey refuses keys too weak for a cluster certificate.
func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too weak: use at least 2048 bits or ECDSA P-256", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("ECDSA curve %s is not accepted: use P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("key type %T is not accepted", pub)
	}
	return nil
}

// Shape is what an issued certificate copies from the cluster's existing
// certificate of the same kind: key usages and lifetime.
type Shape struct {
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	Validity    time.Duration
	// From is the certificate file the shape was read from; empty for the default.
	From string
}

// DefaultShape is used when no existing certificate is found: digital
// signature and key encipherment, server and client auth, 3 years.
func DefaultShape() Shape {
	return Shape{
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		Validity:    pki.DefaultValidity,
	}
}

// ShapesFromRoot reads the survivor's own member certificates under root and
// returns, per kind, the shape to copy. Kinds without a readable certificate
// get DefaultShape.
func ShapesFromRoot(root string, prof *profile.Profile, survivor plan.Member) map[string]Shape {
	out := map[string]Shape{}
	for _, kind := range Kinds {
		out[kind] = DefaultShape()
		if prof == nil {
			continue
		}
		rel, _ := prof.MemberCert(kind, CertIdentity(survivor))
		path := profile.Abs(root, rel)
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		c, err := pki.ParseCertPEM(b)
		if err != nil {
			continue
		}
		s := Shape{KeyUsage: c.KeyUsage, ExtKeyUsage: c.ExtKeyUsage, Validity: c.NotAfter.Sub(c.NotBefore), From: path}
		if s.KeyUsage == 0 {
			s.KeyUsage = DefaultShape().KeyUsage
		}
		if len(s.ExtKeyUsage) == 0 {
			s.ExtKeyUsage = DefaultShape().ExtKeyUsage
		}
		if s.Validity < 24*time.Hour {
			s.Validity = pki.DefaultValidity
		}
		out[kind] = s
	}
	return out
}

// template builds the certificate for a validated CSR.
func template(kind string, m plan.Member, csr *x509.CertificateRequest, sh Shape) *x509.Certificate {
	r := pki.Request{
		CommonName:   CommonName(kind, m),
		Organization: []string{organization[kind]},
		DNSNames:     csr.DNSNames,
		IPs:          csr.IPAddresses,
		Validity:     sh.Validity,
	}
	if len(r.DNSNames) == 0 && len(r.IPs) == 0 {
		r.DNSNames, r.IPs = DefaultSANs(m)
	}
	t := r.Template()
	t.KeyUsage = sh.KeyUsage
	t.ExtKeyUsage = sh.ExtKeyUsage
	return t
}

func parseCSR(pemText string) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode([]byte(pemText))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("not a PEM CERTIFICATE REQUEST")
	}
	return x509.ParseCertificateRequest(blk.Bytes)
}

// keysHash identifies the set of public keys of a request.
func keysHash(csrs map[string]*x509.CertificateRequest) string {
	var kinds []string
	for k := range csrs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	h := sha256.New()
	for _, k := range kinds {
		der, _ := x509.MarshalPKIXPublicKey(csrs[k].PublicKey)
		h.Write([]byte(k))
		h.Write(der)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SPKIHash is the pin of a CA certificate as join's --ca-hash takes it:
// "sha256:" and the hex SHA-256 of its SubjectPublicKeyInfo (kubeadm's format).
func SPKIHash(c *x509.Certificate) string {
	s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(s[:])
}

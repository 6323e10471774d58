// Package csr approves the kubelet certificate signing requests of new
// masters, and nothing else: a pending CSR is approved only when it is the
// kubelet client CSR of a planned node requested by the node bootstrapper,
// or the kubelet serving CSR of a planned node requested by that node with
// only that node's names and addresses. Every other CSR is reported with the
// reason it was not approved.
package csr

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// Kinds of CSR the rules approve.
const (
	// KindClient is the kubelet's client certificate (signer
	// kubernetes.io/kube-apiserver-client-kubelet).
	KindClient = "client"
	// KindServing is the kubelet's serving certificate (signer
	// kubernetes.io/kubelet-serving).
	KindServing = "serving"
)

const (
	nodeUserPrefix      = "system:node:"
	nodesGroup          = "system:nodes"
	bootstrapUserPrefix = "system:bootstrap:"
	// BootstrapServiceAccount is the identity OpenShift's machine-config
	// operator gives new nodes to request their first client certificate.
	BootstrapServiceAccount = "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper"
)

// usage rules of the two kubelet signers: the required usage and the ones
// also allowed (as in kube-controller-manager's CSR signing controller).
var usageRules = map[string]struct {
	required certv1.KeyUsage
	allowed  []certv1.KeyUsage
}{
	KindClient:  {certv1.UsageClientAuth, []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageClientAuth}},
	KindServing: {certv1.UsageServerAuth, []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageServerAuth}},
}

// Rules are what a CSR is checked against.
type Rules struct {
	// Nodes are the node names of the planned masters; a CSR for any
	// other node is not approved.
	Nodes []string
	// Addresses holds, per registered node, the names and addresses its
	// serving certificate may carry: its name and its status addresses.
	// A serving CSR of a node missing here is not approved (yet).
	Addresses map[string][]string
}

// NodeAddresses returns the names and addresses a node's serving
// certificate may carry: the node name and every status address
// (Hostname, InternalIP, ExternalIP, InternalDNS, ExternalDNS).
func NodeAddresses(n *corev1.Node) []string {
	out := []string{n.Name}
	for _, a := range n.Status.Addresses {
		if a.Address != "" && !slices.Contains(out, a.Address) {
			out = append(out, a.Address)
		}
	}
	return out
}

// Decision is the verdict on one CSR.
type Decision struct {
	// Name is the CSR's name.
	Name string `json:"name"`
	// Signer is the CSR's signer name.
	Signer string `json:"signer"`
	// Requestor is the user that created the CSR.
	Requestor string `json:"requestor"`
	// Node is the node the CSR's subject names ("" when it names none).
	Node string `json:"node,omitempty"`
	// Kind is KindClient or KindServing when the signer is one of the
	// kubelet signers.
	Kind string `json:"kind,omitempty"`
	// State is pending, approved, denied or failed.
	State string `json:"state"`
	// Approve is true when the CSR is pending and passes every rule.
	Approve bool `json:"approve"`
	// Reason says why it is approved, or every rule it breaks.
	Reason string `json:"reason"`
}

// State returns pending, approved, denied or failed.
func State(r *certv1.CertificateSigningRequest) string {
	for _, c := range r.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case certv1.CertificateDenied:
			return "denied"
		case certv1.CertificateFailed:
			return "failed"
		case certv1.CertificateApproved:
			return "approved"
		}
	}
	return "pending"
}

// Decide checks one CSR against the rules. Only a pending CSR can be
// approved; the reason of a refusal lists every rule the CSR breaks.
func Decide(r *certv1.CertificateSigningRequest, rules Rules) Decision {
	d := Decision{Name: r.Name, Signer: r.Spec.SignerName, Requestor: r.Spec.Username, State: State(r)}
	var why []string
	bad := func(format string, a ...any) { why = append(why, fmt.Sprintf(format, a...)) }

	switch r.Spec.SignerName {
	case certv1.KubeAPIServerClientKubeletSignerName:
		d.Kind = KindClient
	case certv1.KubeletServingSignerName:
		d.Kind = KindServing
	default:
		bad("signer %q is neither %s nor %s", r.Spec.SignerName, certv1.KubeAPIServerClientKubeletSignerName, certv1.KubeletServingSignerName)
	}

	req, err := parseRequest(r.Spec.Request)
	if err != nil {
		bad("%v", err)
	} else {
		cn := req.Subject.CommonName
		if name, ok := strings.CutPrefix(cn, nodeUserPrefix); ok && name != "" {
			d.Node = name
		} else {
			bad("subject CN %q is not %s<node name>", cn, nodeUserPrefix)
		}
		if o := req.Subject.Organization; len(o) != 1 || o[0] != nodesGroup {
			bad("subject O %q is not [%q]", o, nodesGroup)
		}
		if d.Node != "" && !slices.Contains(rules.Nodes, d.Node) {
			bad("node %q is not one of the planned nodes %s", d.Node, strings.Join(rules.Nodes, ","))
		}
		switch d.Kind {
		case KindClient:
			if u := r.Spec.Username; u != BootstrapServiceAccount && !strings.HasPrefix(u, bootstrapUserPrefix) {
				bad("client CSR requested by %q, not by the node bootstrapper (%s or %s<token id>)", u, BootstrapServiceAccount, bootstrapUserPrefix)
			}
			if sans := requestSANs(req); len(sans) > 0 {
				bad("client CSR carries SANs %s; a kubelet client certificate has none", strings.Join(sans, ","))
			}
		case KindServing:
			if d.Node != "" && r.Spec.Username != nodeUserPrefix+d.Node {
				bad("serving CSR for node %q requested by %q, not by the node itself (%s%s)", d.Node, r.Spec.Username, nodeUserPrefix, d.Node)
			}
			checkServingSANs(req, d.Node, rules, bad)
		}
	}
	if d.Kind != "" {
		checkUsages(r.Spec.Usages, d.Kind, bad)
	}
	if d.State != "pending" {
		bad("already %s", d.State)
	}

	if len(why) > 0 {
		d.Reason = strings.Join(why, "; ")
		return d
	}
	d.Approve = true
	if d.Kind == KindClient {
		d.Reason = fmt.Sprintf("kubelet client CSR of planned node %s from the node bootstrapper %s", d.Node, r.Spec.Username)
	} else {
		d.Reason = fmt.Sprintf("kubelet serving CSR of planned node %s from the node itself, SANs %s", d.Node, strings.Join(requestSANs(req), ","))
	}
	return d
}

func parseRequest(b []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("spec.request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("spec.request does not parse: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("spec.request signature does not verify: %v", err)
	}
	return req, nil
}

func requestSANs(req *x509.CertificateRequest) []string {
	var s []string
	s = append(s, req.DNSNames...)
	for _, ip := range req.IPAddresses {
		s = append(s, ip.String())
	}
	s = append(s, req.EmailAddresses...)
	for _, u := range req.URIs {
		s = append(s, u.String())
	}
	return s
}

func checkServingSANs(req *x509.CertificateRequest, node string, rules Rules, bad func(string, ...any)) {
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		bad("serving CSR carries email or URI SANs %s", strings.Join(append(append([]string{}, req.EmailAddresses...), urls(req)...), ","))
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		bad("serving CSR has no DNS or IP SAN")
		return
	}
	if node == "" {
		return
	}
	allowed, ok := rules.Addresses[node]
	if !ok {
		bad("node %q is not registered yet, so its serving SANs cannot be checked against its addresses (approved on a later pass once the node exists)", node)
		return
	}
	var extra []string
	for _, n := range req.DNSNames {
		if !slices.Contains(allowed, n) {
			extra = append(extra, n)
		}
	}
	for _, ip := range req.IPAddresses {
		if !containsIP(allowed, ip) {
			extra = append(extra, ip.String())
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		bad("serving CSR SANs %s are not names or addresses of node %q (it has %s)", strings.Join(extra, ","), node, strings.Join(allowed, ","))
	}
}

func urls(req *x509.CertificateRequest) []string {
	var s []string
	for _, u := range req.URIs {
		s = append(s, u.String())
	}
	return s
}

func containsIP(list []string, ip net.IP) bool {
	for _, s := range list {
		if p := net.ParseIP(s); p != nil && p.Equal(ip) {
			return true
		}
	}
	return false
}

func checkUsages(usages []certv1.KeyUsage, kind string, bad func(string, ...any)) {
	rule := usageRules[kind]
	seen := map[certv1.KeyUsage]bool{}
	var extra []string
	for _, u := range usages {
		if seen[u] {
			bad("usage %q is listed twice", u)
		}
		seen[u] = true
		if !slices.Contains(rule.allowed, u) {
			extra = append(extra, string(u))
		}
	}
	if !seen[rule.required] {
		bad("usages %q lack %q, which a kubelet %s certificate needs", usages, rule.required, kind)
	}
	if len(extra) > 0 {
		bad("usages %s are not allowed for a kubelet %s certificate (allowed: %q)", strings.Join(extra, ","), kind, rule.allowed)
	}
}

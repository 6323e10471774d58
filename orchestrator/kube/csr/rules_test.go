package csr_test

import (
	"strings"
	"testing"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/kubetest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/csr"
)

// TestDecideOffline covers what an API server does not let through or what
// is not a CSR's content: unparsable requests and CSRs already decided.
func TestDecideOffline(t *testing.T) {
	rules := csr.Rules{Nodes: []string{"master-1"}, Addresses: map[string][]string{"master-1": {"master-1", "10.0.0.11"}}}
	good := certv1.CertificateSigningRequest{Spec: certv1.CertificateSigningRequestSpec{
		Request:    kubetest.RequestPEM(t, clientSpec("master-1")),
		SignerName: certv1.KubeAPIServerClientKubeletSignerName,
		Usages:     clientUsages,
		Username:   "system:bootstrap:abcdef",
	}}
	if d := csr.Decide(&good, rules); !d.Approve || d.Node != "master-1" || d.Kind != csr.KindClient {
		t.Fatalf("good CSR: %+v", d)
	}
	tests := []struct {
		name   string
		edit   func(r *certv1.CertificateSigningRequest)
		reason string
	}{
		{"not PEM", func(r *certv1.CertificateSigningRequest) { r.Spec.Request = []byte("hello") }, "not a PEM CERTIFICATE REQUEST"},
		{"bad signature", func(r *certv1.CertificateSigningRequest) {
			b := kubetest.RequestPEM(t, clientSpec("master-1"))
			other := kubetest.RequestPEM(t, clientSpec("master-1"))
			// Splice: keep the first request's header, break its signature.
			r.Spec.Request = append(b[:len(b)-40:len(b)-40], other[len(other)-40:]...)
		}, "spec.request"},
		{"duplicate usage", func(r *certv1.CertificateSigningRequest) {
			r.Spec.Usages = []certv1.KeyUsage{certv1.UsageClientAuth, certv1.UsageClientAuth}
		}, "listed twice"},
		{"no usages", func(r *certv1.CertificateSigningRequest) { r.Spec.Usages = nil }, `lack "client auth"`},
		{"already approved", func(r *certv1.CertificateSigningRequest) {
			r.Status.Conditions = []certv1.CertificateSigningRequestCondition{{Type: certv1.CertificateApproved, Status: corev1.ConditionTrue}}
		}, "already approved"},
		{"denied", func(r *certv1.CertificateSigningRequest) {
			r.Status.Conditions = []certv1.CertificateSigningRequestCondition{{Type: certv1.CertificateDenied, Status: corev1.ConditionTrue}}
		}, "already denied"},
		{"no planned nodes", func(r *certv1.CertificateSigningRequest) {}, "not one of the planned nodes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := good.DeepCopy()
			tc.edit(r)
			rl := rules
			if tc.name == "no planned nodes" {
				rl = csr.Rules{}
			}
			d := csr.Decide(r, rl)
			if d.Approve {
				t.Fatalf("approved: %+v", d)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q lacks %q", d.Reason, tc.reason)
			}
		})
	}
}

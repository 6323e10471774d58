// Package kube groups the cluster-side recovery steps that talk to the
// Kubernetes API with client-go: approving the new masters' kubelet CSRs
// (csr), waiting for master nodes (nodes), computing and applying DNS and
// load-balancer changes (dnslb), removing the temporary signer pod
// (signerpod), and connecting, proxy checks and /readyz polling (apiclient).
// kubetest starts a real kube-apiserver for their tests.
package kube

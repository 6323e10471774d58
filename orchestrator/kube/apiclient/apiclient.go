// Package apiclient connects to the Kubernetes API for the cluster-side
// recovery steps: it loads a kubeconfig, builds only the typed clients those
// steps use (core/v1 and certificates/v1), warns when the API server address
// would be reached through an HTTP(S) proxy, and polls /readyz until the API
// server is ready and accepts the kubeconfig's credentials.
package apiclient

import (
	"errors"
	"fmt"
	"os"

	certv1client "k8s.io/client-go/kubernetes/typed/certificates/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Clients are the typed clients the recovery steps use.
type Clients struct {
	// Config is the REST configuration the clients were built from.
	Config *rest.Config
	// Core reads nodes and deletes the signer pod.
	Core corev1client.CoreV1Interface
	// Certificates lists and approves CSRs.
	Certificates certv1client.CertificatesV1Interface
}

// LoadConfig reads a kubeconfig. An empty path means $KUBECONFIG, then
// ~/.kube/config, as kubectl and oc do.
func LoadConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, errors.New("no kubeconfig: give --kubeconfig (on a restored master: /etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost-recovery.kubeconfig) or set KUBECONFIG")
		}
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// New builds the typed clients for a REST configuration.
func New(cfg *rest.Config) (*Clients, error) {
	c := rest.CopyConfig(cfg)
	if c.UserAgent == "" {
		c.UserAgent = "etcd-rescue"
	}
	core, err := corev1client.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("core/v1 client for %s: %w", c.Host, err)
	}
	certs, err := certv1client.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("certificates/v1 client for %s: %w", c.Host, err)
	}
	return &Clients{Config: c, Core: core, Certificates: certs}, nil
}

// Connect loads a kubeconfig and builds the clients.
func Connect(kubeconfig string) (*Clients, error) {
	cfg, err := LoadConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// Package apiclient connects to the Kubernetes API for the cluster-side
// recovery steps: it loads a kubeconfig, makes the few calls those steps use
// (nodes, pods, CSRs and their approval) on REST clients whose scheme holds
// only core/v1 and certificates/v1, warns when the API server address
// would be reached through an HTTP(S) proxy, and polls /readyz until the
// API server is ready and accepts the kubeconfig's credentials.
//
// client-go's typed clientsets are not used on purpose: importing them
// registers every API group and their apply configurations, which adds
// about 13 MB to the binary the rescue image carries.
package apiclient

import (
	"context"
	"errors"
	"fmt"
	"os"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := certv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
}

// Clients makes the API calls of the recovery steps.
type Clients struct {
	// Config is the REST configuration the clients were built from.
	Config *rest.Config
	core   *rest.RESTClient
	certs  *rest.RESTClient
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
			return nil, errors.New("no kubeconfig: give --kubeconfig with a cluster admin's kubeconfig (the installer's auth/kubeconfig on OpenShift) or set KUBECONFIG")
		}
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// New builds the clients for a REST configuration.
func New(cfg *rest.Config) (*Clients, error) {
	c := rest.CopyConfig(cfg)
	if c.UserAgent == "" {
		c.UserAgent = "etcd-rescue"
	}
	core, err := restClient(c, "/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, fmt.Errorf("core/v1 client for %s: %w", c.Host, err)
	}
	certs, err := restClient(c, "/apis", certv1.SchemeGroupVersion)
	if err != nil {
		return nil, fmt.Errorf("certificates/v1 client for %s: %w", c.Host, err)
	}
	return &Clients{Config: c, core: core, certs: certs}, nil
}

func restClient(cfg *rest.Config, apiPath string, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.APIPath = apiPath
	c.GroupVersion = &gv
	c.NegotiatedSerializer = codecs.WithoutConversion()
	c.ContentType = runtime.ContentTypeJSON
	return rest.RESTClientFor(c)
}

// Connect loads a kubeconfig and builds the clients.
func Connect(kubeconfig string) (*Clients, error) {
	cfg, err := LoadConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// ListNodes lists the nodes matching a label selector ("" for all).
func (c *Clients) ListNodes(ctx context.Context, selector string) (*corev1.NodeList, error) {
	var l corev1.NodeList
	err := c.core.Get().Resource("nodes").VersionedParams(&metav1.ListOptions{LabelSelector: selector}, parameterCodec).Do(ctx).Into(&l)
	return &l, err
}

// GetNode reads one node.
func (c *Clients) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	var n corev1.Node
	err := c.core.Get().Resource("nodes").Name(name).Do(ctx).Into(&n)
	return &n, err
}

// GetPod reads one pod.
func (c *Clients) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var p corev1.Pod
	err := c.core.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(&p)
	return &p, err
}

// ListPods lists the pods of a namespace matching a label selector.
func (c *Clients) ListPods(ctx context.Context, namespace, selector string) (*corev1.PodList, error) {
	var l corev1.PodList
	err := c.core.Get().Namespace(namespace).Resource("pods").VersionedParams(&metav1.ListOptions{LabelSelector: selector}, parameterCodec).Do(ctx).Into(&l)
	return &l, err
}

// DeletePod deletes one pod.
func (c *Clients) DeletePod(ctx context.Context, namespace, name string, opts metav1.DeleteOptions) error {
	return c.core.Delete().Namespace(namespace).Resource("pods").Name(name).Body(&opts).Do(ctx).Error()
}

// ListCSRs lists every certificate signing request.
func (c *Clients) ListCSRs(ctx context.Context) (*certv1.CertificateSigningRequestList, error) {
	var l certv1.CertificateSigningRequestList
	err := c.certs.Get().Resource("certificatesigningrequests").Do(ctx).Into(&l)
	return &l, err
}

// UpdateCSRApproval writes a CSR's conditions through its approval
// subresource (what `oc adm certificate approve` does).
func (c *Clients) UpdateCSRApproval(ctx context.Context, r *certv1.CertificateSigningRequest) (*certv1.CertificateSigningRequest, error) {
	var out certv1.CertificateSigningRequest
	err := c.certs.Put().Resource("certificatesigningrequests").Name(r.Name).SubResource("approval").Body(r).Do(ctx).Into(&out)
	return &out, err
}

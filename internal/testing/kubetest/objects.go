package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
)

// NodeSpec describes a node to register.
type NodeSpec struct {
	Name string
	// Role labels the node node-role.kubernetes.io/<Role>. Default master.
	Role string
	// InternalIP and Hostname are its status addresses ("" leaves one out).
	InternalIP, Hostname string
	// Ready sets the Ready condition True; false sets it False.
	Ready bool
}

// CreateNode registers a node as its kubelet would: the object, then its
// status (addresses, Ready condition, kubelet version) through the status
// subresource.
func (s *Server) CreateNode(t testing.TB, n NodeSpec) *corev1.Node {
	t.Helper()
	ctx := context.Background()
	if n.Role == "" {
		n.Role = "master"
	}
	core := s.Typed(t).Core
	node, err := core.Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   n.Name,
		Labels: map[string]string{"node-role.kubernetes.io/" + n.Role: "", "kubernetes.io/hostname": n.Name},
	}}, metav1.CreateOptions{})
	must(t, err)
	if n.InternalIP != "" {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: n.InternalIP})
	}
	if n.Hostname != "" {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: n.Hostname})
	}
	node.Status.NodeInfo.KubeletVersion = Version
	node.Status.Conditions = []corev1.NodeCondition{readyCondition(n.Ready)}
	node, err = core.Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	must(t, err)
	return node
}

// SetNodeReady sets a node's Ready condition through the status subresource.
func (s *Server) SetNodeReady(t testing.TB, name string, ready bool) {
	t.Helper()
	ctx := context.Background()
	nodes := s.Typed(t).Core.Nodes()
	n, err := nodes.Get(ctx, name, metav1.GetOptions{})
	must(t, err)
	n.Status.Conditions = []corev1.NodeCondition{readyCondition(ready)}
	_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
	must(t, err)
}

func readyCondition(ready bool) corev1.NodeCondition {
	c := corev1.NodeCondition{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
	}
	if !ready {
		c.Status, c.Reason, c.Message = corev1.ConditionFalse, "KubeletNotReady", "container runtime network not ready: NetworkReady=false"
	}
	return c
}

// AllowCSRCreation binds the built-in system:node-bootstrapper cluster role
// (create and read CSRs) to the groups kubelets use (system:bootstrappers,
// system:nodes, the machine-config-operator service accounts) and to the
// extra users given.
func (s *Server) AllowCSRCreation(t testing.TB, users ...string) {
	t.Helper()
	rc, err := rbacv1client.NewForConfig(s.Admin)
	must(t, err)
	subjects := []rbacv1.Subject{
		{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:bootstrappers"},
		{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"},
		{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:openshift-machine-config-operator"},
	}
	for _, u := range users {
		subjects = append(subjects, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: u})
	}
	_, err = rc.ClusterRoleBindings().Create(context.Background(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubetest:node-bootstrapper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"},
		Subjects:   subjects,
	}, metav1.CreateOptions{})
	must(t, err)
}

// Identities kubelets create CSRs with.
var (
	// BootstrapToken is a bootstrap token user and its groups.
	BootstrapToken = Identity{"system:bootstrap:abcdef", []string{"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"}}
	// BootstrapSA is OpenShift's node-bootstrapper service account.
	BootstrapSA = Identity{"system:serviceaccount:openshift-machine-config-operator:node-bootstrapper", []string{"system:serviceaccounts", "system:serviceaccounts:openshift-machine-config-operator", "system:authenticated"}}
)

// Identity is a user and its groups.
type Identity struct {
	User   string
	Groups []string
}

// NodeIdentity is the identity of a node's kubelet.
func NodeIdentity(name string) Identity {
	return Identity{"system:node:" + name, []string{"system:nodes", "system:authenticated"}}
}

// CSRSpec describes a certificate request as a kubelet makes one.
type CSRSpec struct {
	CN, O  string
	DNS    []string
	IPs    []string
	Emails []string
	Signer string
	Usages []certv1.KeyUsage
}

// RequestPEM makes a real ECDSA P-256 key and a signed x509 CSR for it.
func RequestPEM(t testing.TB, s CSRSpec) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.CN}, DNSNames: s.DNS, EmailAddresses: s.Emails}
	if s.O != "" {
		tmpl.Subject.Organization = []string{s.O}
	}
	for _, ip := range s.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// CreateCSR creates a CSR as id (through impersonation) and returns it as
// the API server stored it, or the API server's error.
func (s *Server) CreateCSR(t testing.TB, id Identity, spec CSRSpec) (*certv1.CertificateSigningRequest, error) {
	t.Helper()
	cl := s.TypedAs(t, id)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cl.Certificates.CertificateSigningRequests().Create(ctx, &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-"},
		Spec:       certv1.CertificateSigningRequestSpec{Request: RequestPEM(t, spec), SignerName: spec.Signer, Usages: spec.Usages},
	}, metav1.CreateOptions{})
}

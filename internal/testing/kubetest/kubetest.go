// Package kubetest starts a real kube-apiserver on 127.0.0.1 for tests,
// backed by a real etcd with TLS (internal/etcdtest), with generated
// certificates (a CA, a serving certificate, a service-account key pair and
// an admin client certificate in system:masters), RBAC authorization and
// no endpoint reconciler, so nothing leaves 127.0.0.1.
//
// The kube-apiserver binary is built once by `make kube-apiserver`
// (scripts/build-kube.sh) into
// ${ETCD_RESCUE_CACHE:-$HOME/.cache/etcd-rescue}/kube/<Version>/; the
// ETCD_RESCUE_KUBE_APISERVER environment variable overrides the path. A
// missing binary fails the test with the command that builds it.
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	certv1client "k8s.io/client-go/kubernetes/typed/certificates/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/testport"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/apiclient"
)

// Version is the kube-apiserver (and kube-controller-manager) version the tests run: the Kubernetes
// release of the client-go in go.mod.
const Version = "v1.37.2"

// BinaryPath returns where the kube-apiserver binary is expected.
func BinaryPath() string { return binaryPath("kube-apiserver", "ETCD_RESCUE_KUBE_APISERVER") }

func binaryPath(name, env string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	cache := os.Getenv("ETCD_RESCUE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "etcd-rescue")
	}
	return filepath.Join(cache, "kube", Version, name)
}

// Binary returns the kube-apiserver path, or fails the test saying how to
// build it.
func Binary(t testing.TB) string {
	t.Helper()
	p := BinaryPath()
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("kube-apiserver %s not found at %s: build it once with `make kube-apiserver` (about 17 minutes on 2 cores; cached outside the repository), or point ETCD_RESCUE_KUBE_APISERVER at one", Version, p)
	}
	return p
}

// Server is a running kube-apiserver.
type Server struct {
	// URL is https://127.0.0.1:PORT.
	URL string
	// CAFile is the CA that signed the serving and client certificates;
	// CAKeyFile is its key (a controller-manager signs CSRs with them).
	CAFile, CAKeyFile string
	// Kubeconfig is an admin kubeconfig file (system:masters).
	Kubeconfig string
	// Admin is the admin REST configuration.
	Admin *rest.Config
	// Dir holds the certificates and the log.
	Dir string
	// LogFile is the kube-apiserver's output.
	LogFile string

	ca  *pki.CA
	cmd *exec.Cmd
}

// Start starts etcd and a kube-apiserver and waits until /readyz answers
// 200. Both are stopped at test cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()

	ep := etcdtest.NewPKI(t)
	peer, client := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
	ep.Start(t, etcdtest.MemberSpec{
		Name: "etcd0", DataDir: filepath.Join(dir, "etcd"), PeerURL: peer, ClientURL: client,
		InitialCluster: "etcd0=" + peer, State: "new", Token: "kubetest",
	})

	ca, err := pki.NewCA("kubetest-ca", 24*time.Hour)
	must(t, err)
	s := &Server{Dir: dir, CAFile: filepath.Join(dir, "ca.crt"), ca: ca, LogFile: filepath.Join(dir, "kube-apiserver.log")}
	must(t, os.WriteFile(s.CAFile, ca.CertPEM, 0o644))
	caKey, err := pki.MarshalKeyPEM(ca.Key)
	must(t, err)
	s.CAKeyFile = filepath.Join(dir, "ca.key")
	must(t, os.WriteFile(s.CAKeyFile, caKey, 0o600))
	servingCert, servingKey := s.issue(t, "serving", pki.Request{
		CommonName: "kube-apiserver",
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		Usage:      pki.ServerAndClient,
	})
	adminCert, adminKey := s.issue(t, "admin", pki.Request{CommonName: "kubetest-admin", Organization: []string{"system:masters"}, Usage: pki.ClientOnly})
	saKey, saPub := writeSAKeys(t, dir)

	port := freePort(t)
	s.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	args := []string{
		"--etcd-servers=" + client,
		"--etcd-cafile=" + ep.CAFile,
		"--etcd-certfile=" + ep.ClientCert,
		"--etcd-keyfile=" + ep.ClientKey,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "cert-dir"),
		"--tls-cert-file=" + servingCert,
		"--tls-private-key-file=" + servingKey,
		"--client-ca-file=" + s.CAFile,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=1",
	}
	log, err := os.Create(s.LogFile)
	must(t, err)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, s.cmd.Start())
	proc := watch(s.cmd, log)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-apiserver log (last lines of %s):\n%s", s.LogFile, s.LogTail(40))
		}
		proc.stop(15 * time.Second)
	})

	s.Admin = &rest.Config{
		Host:            s.URL,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.CAFile, CertFile: adminCert, KeyFile: adminKey},
		QPS:             100,
		Burst:           200,
	}
	s.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	must(t, writeKubeconfig(s.Kubeconfig, s.URL, s.CAFile, adminCert, adminKey))

	start := time.Now()
	if err := s.waitReady(proc, adminCert, adminKey, 3*time.Minute); err != nil {
		t.Fatalf("kube-apiserver did not become ready: %v\nlast lines of %s:\n%s", err, s.LogFile, s.LogTail(40))
	}
	t.Logf("kube-apiserver %s ready at %s in %s", Version, s.URL, time.Since(start).Round(100*time.Millisecond))
	return s
}

func (s *Server) waitReady(proc *process, certFile, keyFile string, timeout time.Duration) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.CertPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-proc.done:
			return fmt.Errorf("kube-apiserver exited: %v", proc.err)
		default:
		}
		resp, err := hc.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("/readyz after %s: %s", timeout, last)
}

// LogTail returns the last n lines of the kube-apiserver's output.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.LogFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Impersonate returns the admin configuration acting as user in groups, as
// `kubectl --as USER --as-group GROUP` does: requests carry that identity
// (for example a bootstrap token's system:bootstrap:abcdef).
func (s *Server) Impersonate(user string, groups ...string) *rest.Config {
	c := rest.CopyConfig(s.Admin)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return c
}

// Typed are client-go's typed clients, for tests to set up and inspect
// objects (the code under test uses apiclient).
type Typed struct {
	Core         corev1client.CoreV1Interface
	Certificates certv1client.CertificatesV1Interface
}

// Typed returns typed admin clients.
func (s *Server) Typed(t testing.TB) Typed { return typed(t, s.Admin) }

// TypedAs returns typed clients acting as id.
func (s *Server) TypedAs(t testing.TB, id Identity) Typed {
	return typed(t, s.Impersonate(id.User, id.Groups...))
}

func typed(t testing.TB, cfg *rest.Config) Typed {
	t.Helper()
	core, err := corev1client.NewForConfig(cfg)
	must(t, err)
	certs, err := certv1client.NewForConfig(cfg)
	must(t, err)
	return Typed{Core: core, Certificates: certs}
}

// Clients returns the admin clients.
func (s *Server) Clients(t testing.TB) *apiclient.Clients {
	t.Helper()
	c, err := apiclient.New(s.Admin)
	must(t, err)
	return c
}

// ClientsAs returns clients acting as user in groups.
func (s *Server) ClientsAs(t testing.TB, user string, groups ...string) *apiclient.Clients {
	t.Helper()
	c, err := apiclient.New(s.Impersonate(user, groups...))
	must(t, err)
	return c
}

// Context returns a context cancelled at test cleanup, with a timeout.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (s *Server) issue(t testing.TB, name string, r pki.Request) (certFile, keyFile string) {
	t.Helper()
	r.Validity = 24 * time.Hour
	c, k, err := s.ca.Issue(r)
	must(t, err)
	certFile, keyFile = filepath.Join(s.Dir, name+".crt"), filepath.Join(s.Dir, name+".key")
	must(t, pki.WriteFiles(certFile, c, keyFile, k))
	return certFile, keyFile
}

func writeSAKeys(t testing.TB, dir string) (keyFile, pubFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	keyPEM, err := pki.MarshalKeyPEM(key)
	must(t, err)
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	must(t, err)
	keyFile, pubFile = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	must(t, os.WriteFile(keyFile, keyPEM, 0o600))
	must(t, os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644))
	return keyFile, pubFile
}

func writeKubeconfig(path, server, caFile, certFile, keyFile string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	cfg.Contexts["admin"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin"}
	cfg.CurrentContext = "admin"
	return clientcmd.WriteToFile(*cfg, path)
}

func freePort(t testing.TB) int {
	t.Helper()
	return testport.Free(t)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

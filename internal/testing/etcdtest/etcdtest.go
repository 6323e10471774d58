// Package etcdtest starts real etcd servers (go.etcd.io/etcd/server/v3/embed)
// with TLS on 127.0.0.1 for tests: whole clusters, single members from an
// existing data dir, and members that join a running cluster.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/testport"
)

// PKI is a test CA with a client certificate and one certificate per member.
type PKI struct {
	CA     *pki.CA
	Dir    string
	CAFile string
	// ClientCert and ClientKey are a client-only certificate for etcdctl-like use.
	ClientCert, ClientKey string
}

// NewPKI creates a CA and a client certificate in a temporary folder.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("etcd-signer", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CA: ca, Dir: dir, CAFile: filepath.Join(dir, "ca.crt")}
	if err := pki.WriteFiles(p.CAFile, ca.CertPEM, filepath.Join(dir, "ca.key"), mustKey(t, ca)); err != nil {
		t.Fatal(err)
	}
	p.ClientCert, p.ClientKey = p.Issue(t, "etcd-client", pki.ClientOnly)
	return p
}

func mustKey(t testing.TB, ca *pki.CA) []byte {
	b, err := pki.MarshalKeyPEM(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CAKeyFile is the CA's private key file.
func (p *PKI) CAKeyFile() string { return filepath.Join(p.Dir, "ca.key") }

// Issue writes a certificate for 127.0.0.1/localhost and returns its files.
func (p *PKI) Issue(t testing.TB, cn string, u pki.Usage) (certFile, keyFile string) {
	t.Helper()
	c, k, err := p.CA.Issue(pki.Request{
		CommonName: cn,
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		Usage:      u,
		Validity:   24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(p.Dir, cn+".crt")
	keyFile = filepath.Join(p.Dir, cn+".key")
	if err := pki.WriteFiles(certFile, c, keyFile, k); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ClientTLS returns the client TLS config.
func (p *PKI) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	info := transport.TLSInfo{CertFile: p.ClientCert, KeyFile: p.ClientKey, TrustedCAFile: p.CAFile}
	c, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Client connects to endpoints with the client certificate.
func (p *PKI) Client(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         p.ClientTLS(t),
		DialTimeout: 10 * time.Second,
		Logger:      quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// MemberSpec describes one member to start.
type MemberSpec struct {
	Name      string
	DataDir   string
	PeerURL   string // https://127.0.0.1:PORT
	ClientURL string
	// InitialCluster and State ("new" or "existing") are ignored by etcd
	// when DataDir already holds a member.
	InitialCluster string
	State          string
	Token          string
	// CertFile/KeyFile serve both peer and client traffic; empty means issue
	// one from the PKI.
	CertFile, KeyFile string
}

// Member is a running embedded etcd.
type Member struct {
	Spec MemberSpec
	Etcd *embed.Etcd
}

// FreeURL returns an https URL on a free 127.0.0.1 port.
func FreeURL(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("https://127.0.0.1:%d", testport.Free(t))
}

// Config builds the embed config of a member spec.
func (p *PKI) Config(t testing.TB, s MemberSpec) *embed.Config {
	t.Helper()
	if s.CertFile == "" {
		s.CertFile, s.KeyFile = p.Issue(t, s.Name, pki.ServerAndClient)
	}
	cfg := embed.NewConfig()
	cfg.Name = s.Name
	cfg.Dir = s.DataDir
	cfg.ListenPeerUrls = mustURLs(t, s.PeerURL)
	cfg.AdvertisePeerUrls = mustURLs(t, s.PeerURL)
	cfg.ListenClientUrls = mustURLs(t, s.ClientURL)
	cfg.AdvertiseClientUrls = mustURLs(t, s.ClientURL)
	cfg.InitialCluster = s.InitialCluster
	if s.State != "" {
		cfg.ClusterState = s.State
	}
	if s.Token != "" {
		cfg.InitialClusterToken = s.Token
	}
	tlsInfo := transport.TLSInfo{CertFile: s.CertFile, KeyFile: s.KeyFile, TrustedCAFile: p.CAFile, ClientCertAuth: true}
	cfg.ClientTLSInfo = tlsInfo
	cfg.PeerTLSInfo = tlsInfo
	cfg.LogLevel = "fatal" // embed logs shutdown noise at error level
	cfg.LogOutputs = []string{"stderr"}
	return cfg
}

// Start starts a member and waits until it is ready (or, for a member that
// joins, until it serves). It is stopped at test cleanup.
func (p *PKI) Start(t testing.TB, s MemberSpec) *Member {
	t.Helper()
	m, err := p.StartErr(t, s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// StartErr is Start that returns the error instead of failing the test.
func (p *PKI) StartErr(t testing.TB, s MemberSpec) (*Member, error) {
	t.Helper()
	e, err := embed.StartEtcd(p.Config(t, s))
	if err != nil {
		return nil, fmt.Errorf("start etcd %s: %w", s.Name, err)
	}
	m := &Member{Spec: s, Etcd: e}
	t.Cleanup(m.Stop)
	select {
	case <-e.Server.ReadyNotify():
		return m, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd %s failed: %v", s.Name, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd %s not ready after 60s", s.Name)
	}
}

// Stop stops the member; stopping twice is fine.
func (m *Member) Stop() {
	if m.Etcd != nil {
		m.Etcd.Close()
		m.Etcd = nil
	}
}

// Cluster is a running multi-member cluster.
type Cluster struct {
	PKI     *PKI
	Members []*Member
}

// StartCluster starts an n-member TLS cluster in temporary folders.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	p := NewPKI(t)
	specs := make([]MemberSpec, n)
	var ic []string
	for i := range specs {
		specs[i] = MemberSpec{
			Name:      fmt.Sprintf("m%d", i),
			DataDir:   filepath.Join(t.TempDir(), "etcd"),
			PeerURL:   FreeURL(t),
			ClientURL: FreeURL(t),
			State:     "new",
			Token:     "etcdtest",
		}
		ic = append(ic, specs[i].Name+"="+specs[i].PeerURL)
	}
	c := &Cluster{PKI: p, Members: make([]*Member, n)}
	errs := make(chan error, n)
	for i := range specs {
		specs[i].InitialCluster = strings.Join(ic, ",")
		go func(i int) {
			m, err := p.StartErr(t, specs[i])
			c.Members[i] = m
			errs <- err
		}(i)
	}
	for range specs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Endpoints returns the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.Spec.ClientURL)
	}
	return eps
}

// Client connects to every member.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	return c.PKI.Client(t, c.Endpoints()...)
}

// Key returns the i-th test key and its value: known values let a test
// prove every key survived a restore.
func Key(i int) (key, value string) {
	return fmt.Sprintf("/registry/test/key-%06d", i), fmt.Sprintf("value-%06d-%s", i, strings.Repeat("x", 64))
}

// PutKeys writes keys [from, to) with Key's values, in parallel batches.
func PutKeys(t testing.TB, cli *clientv3.Client, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const workers = 16
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for i := from + w; i < to; i += workers {
				k, v := Key(i)
				if _, err := cli.Put(ctx, k, v); err != nil {
					errs <- fmt.Errorf("put %s: %w", k, err)
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// CheckKeys asserts that keys [from, to) hold Key's values.
func CheckKeys(t testing.TB, cli *clientv3.Client, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.Get(ctx, "/registry/test/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	missing := 0
	for i := from; i < to; i++ {
		k, v := Key(i)
		if got[k] != v {
			if missing < 3 {
				t.Errorf("key %s = %q, want %q", k, got[k], v)
			}
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d keys missing or wrong", missing, to-from)
	}
}

func mustURLs(t testing.TB, s string) []url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return []url.URL{*u}
}

// ClientConfig returns a client configuration for endpoints with the
// client certificate.
func ClientConfig(t testing.TB, p *PKI, endpoints ...string) clientv3.Config {
	return clientv3.Config{Endpoints: endpoints, TLS: p.ClientTLS(t), DialTimeout: 10 * time.Second, Logger: quietLogger()}
}

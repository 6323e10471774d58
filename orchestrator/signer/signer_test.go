package signer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/syncbuf"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

func testPlan(t *testing.T) *plan.Plan {
	t.Helper()
	p := &plan.Plan{
		Version:  plan.Version,
		Cluster:  plan.Cluster{Name: "test", Domain: "test.example.com"},
		Profile:  profile.OpenShift43,
		Survivor: "etcd-member-master-0",
	}
	for i := 0; i < 3; i++ {
		n := string(rune('0' + i))
		p.Members = append(p.Members, plan.Member{
			Name:      "etcd-member-master-" + n,
			Host:      "master-" + n,
			IP:        "127.0.0.1",
			DNSName:   "etcd-" + n + ".test.example.com",
			PeerURL:   "https://127.0.0.1:2" + n + "80",
			ClientURL: "https://127.0.0.1:2" + n + "79",
		})
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

type fixture struct {
	p      *plan.Plan
	ca     *pki.CA
	tokens map[string]string
	url    string
	log    *syncbuf.Buffer
	now    time.Time
	done   chan StopReason
	store  string
}

// startSigner runs a certificate-only signer on 127.0.0.1.
func startSigner(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	p := testPlan(t)
	ca, err := pki.NewCA("etcd-signer", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{p: p, ca: ca, log: &syncbuf.Buffer{}, now: time.Now(), done: make(chan StopReason, 1)}
	plain, store, err := NewTokens([]string{p.Members[1].Name, p.Members[2].Name}, f.now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f.store = filepath.Join(t.TempDir(), "tokens.json")
	if err := store.Save(f.store); err != nil {
		t.Fatal(err)
	}
	f.tokens = plain
	prof, _ := profile.Get(profile.OpenShift43)
	cfg := Config{Plan: p, CA: ca, Tokens: store, Profile: prof, Log: log.New(f.log, "", 0), TTL: time.Minute,
		Now: func() time.Time { return f.now }}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "https://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		r, err := srv.Serve(ctx, ln)
		if err != nil {
			t.Error(err)
		}
		f.done <- r
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

func (f *fixture) client(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(f.url, Trust{CA: f.ca.Cert}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func csrPEM(t *testing.T, key any, cn string, dns []string, ips []net.IP) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// request builds a full request for member i with fresh keys.
func (f *fixture) request(t *testing.T, i int) (CertRequest, map[string]*ecdsa.PrivateKey) {
	m := f.p.Members[i]
	req := CertRequest{Name: m.Name, Token: f.tokens[m.Name], CSRs: map[string]string{}}
	keys := map[string]*ecdsa.PrivateKey{}
	prof, _ := profile.Get(profile.OpenShift43)
	for _, k := range Kinds {
		keys[k] = ecKey(t)
		dns, ips := AllowedSANs(prof, k, m)
		req.CSRs[k] = csrPEM(t, keys[k], CommonName(k, m), dns, ips)
	}
	return req, keys
}

func wantRefused(t *testing.T, err error, status int, reason string) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if re.Status != status || !strings.Contains(re.Reason, reason) {
		t.Fatalf("refusal = %d %q, want %d containing %q", re.Status, re.Reason, status, reason)
	}
}

func TestIssuesMemberCertificates(t *testing.T) {
	f := startSigner(t, nil)
	req, keys := f.request(t, 1)
	resp, err := f.client(t).Certificates(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.Cert)
	m := f.p.Members[1]
	for _, k := range Kinds {
		c, err := pki.ParseCertPEM([]byte(resp.Certs[k]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: m.DNSName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s: %v", k, err)
		}
		if c.Subject.CommonName != "system:etcd-"+k+":etcd-1.test.example.com" || c.Subject.Organization[0] != organization[k] {
			t.Errorf("%s subject = %v", k, c.Subject)
		}
		if !keys[k].PublicKey.Equal(c.PublicKey) {
			t.Errorf("%s certificate is for another key", k)
		}
		if life := c.NotAfter.Sub(c.NotBefore); life > 25*time.Hour {
			t.Errorf("%s outlives the CA: %s", k, life) // capped to the test CA's day
		}
	}
	if !strings.Contains(f.log.String(), "issued peer certificate system:etcd-peer:etcd-1.test.example.com") {
		t.Errorf("log lacks the issue:\n%s", f.log)
	}
}

func TestRefusals(t *testing.T) {
	f := startSigner(t, nil)
	cl := f.client(t)
	ctx := context.Background()
	m1 := f.p.Members[1]

	req, _ := f.request(t, 1)
	req.Token = f.tokens[f.p.Members[2].Name]
	_, err := cl.Certificates(ctx, req)
	wantRefused(t, err, 403, "wrong bootstrap token")

	req, _ = f.request(t, 1)
	req.Token = ""
	_, err = cl.Certificates(ctx, req)
	wantRefused(t, err, 403, "wrong bootstrap token")

	// A name outside the plan, or the survivor's (it has no token), gets
	// the answer of a wrong token, and no member names.
	req, _ = f.request(t, 1)
	req.Name = "etcd-member-intruder"
	_, err = cl.Certificates(ctx, req)
	wantRefused(t, err, 403, "wrong bootstrap token")
	for _, m := range f.p.Members {
		if strings.Contains(err.Error(), m.Name) {
			t.Errorf("refusal for a name outside the plan names member %s: %v", m.Name, err)
		}
	}

	req, _ = f.request(t, 0)
	_, err = cl.Certificates(ctx, req)
	wantRefused(t, err, 403, "wrong bootstrap token")

	req, _ = f.request(t, 1)
	req.CSRs["server"] = csrPEM(t, ecKey(t), CommonName("server", m1), []string{"etcd-1.test.example.com", "api.evil.example.com"}, nil)
	_, err = cl.Certificates(ctx, req)
	wantRefused(t, err, 403, "SAN api.evil.example.com")

	req, _ = f.request(t, 1)
	req.CSRs["peer"] = csrPEM(t, ecKey(t), CommonName("peer", m1), nil, []net.IP{net.ParseIP("10.9.9.9")})
	_, err = cl.Certificates(ctx, req)
	wantRefused(t, err, 403, "SAN 10.9.9.9")

	req, _ = f.request(t, 1)
	req.CSRs["peer"] = csrPEM(t, ecKey(t), "system:etcd-peer:etcd-2.test.example.com", nil, nil)
	_, err = cl.Certificates(ctx, req)
	wantRefused(t, err, 403, "common name")

	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	req, _ = f.request(t, 1)
	req.CSRs["metric"] = csrPEM(t, weak, CommonName("metric", m1), nil, nil)
	_, err = cl.Certificates(ctx, req)
	wantRefused(t, err, 403, "RSA key of 1024 bits is too weak")

	// None of the refusals consumed the token: a proper request still works.
	req, _ = f.request(t, 1)
	if _, err := cl.Certificates(ctx, req); err != nil {
		t.Fatalf("valid request after refusals: %v", err)
	}
	if n := strings.Count(f.log.String(), "signer: refused"); n != 8 {
		t.Errorf("log has %d refusals, want 8:\n%s", n, f.log)
	}
}

func TestTokenSingleUseAndExpiry(t *testing.T) {
	f := startSigner(t, nil)
	cl := f.client(t)
	ctx := context.Background()
	req, _ := f.request(t, 1)
	if _, err := cl.Certificates(ctx, req); err != nil {
		t.Fatal(err)
	}
	// The same keys again (a retry after a lost answer) are served again.
	if _, err := cl.Certificates(ctx, req); err != nil {
		t.Fatalf("retry with the same keys: %v", err)
	}
	other, _ := f.request(t, 1)
	_, err := cl.Certificates(ctx, other)
	wantRefused(t, err, 403, "already used")

	// The use is on disk: a restarted signer still refuses the token.
	st, err := LoadTokens(f.store)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Tokens[req.Name]; r.Used == nil || r.KeysHash == "" {
		t.Fatalf("stored record %+v does not show the use", r)
	}

	f.now = f.now.Add(2 * time.Hour)
	req2, _ := f.request(t, 2)
	_, err = cl.Certificates(ctx, req2)
	wantRefused(t, err, 403, "expired")
}

func TestLocksOutTokenGuessing(t *testing.T) {
	f := startSigner(t, nil)
	cl := f.client(t)
	for i := 0; i < maxTokenFailures; i++ {
		req, _ := f.request(t, 1)
		req.Token = "guess"
		_, err := cl.Certificates(context.Background(), req)
		wantRefused(t, err, 403, "wrong bootstrap token")
	}
	req, _ := f.request(t, 1)
	_, err := cl.Certificates(context.Background(), req)
	wantRefused(t, err, 429, "locked out")
}

func TestTLSOnly(t *testing.T) {
	f := startSigner(t, nil)
	// Plain HTTP gets no API answer.
	resp, err := http.Get(strings.Replace(f.url, "https://", "http://", 1) + "/v1/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served")
		}
	}
	// TLS 1.1 fails the handshake.
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.Cert)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(f.url, "https://"), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	// A client pinning the CA by its key hash verifies the signer; a wrong pin does not.
	good, err := NewClient(f.url, Trust{CAHash: SPKIHash(f.ca.Cert)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := good.Healthz(context.Background()); err != nil {
		t.Fatalf("pinned client: %v", err)
	}
	other, _ := pki.NewCA("other", time.Hour)
	bad, _ := NewClient(f.url, Trust{CAHash: SPKIHash(other.Cert)}, nil)
	if err := bad.Healthz(context.Background()); err == nil || !strings.Contains(err.Error(), "pin") {
		t.Fatalf("wrong pin: err = %v", err)
	}
	if _, err := NewClient(strings.Replace(f.url, "https", "http", 1), Trust{CA: f.ca.Cert}, nil); err == nil {
		t.Fatal("client accepted an http:// signer URL")
	}
}

func TestMemberEndpointNeedsPeerCertificate(t *testing.T) {
	f := startSigner(t, nil)
	_, err := f.client(t).AddMember(context.Background(), MemberRequest{Name: f.p.Members[1].Name})
	wantRefused(t, err, 403, "peer certificate")

	// A peer certificate of member 1 cannot add member 2.
	m1 := f.p.Members[1]
	cPEM, kPEM, err := f.ca.Issue(pki.Request{CommonName: CommonName("peer", m1), Usage: pki.ServerAndClient})
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(cPEM, kPEM)
	cl, _ := NewClient(f.url, Trust{CA: f.ca.Cert}, &pair)
	_, err = cl.AddMember(context.Background(), MemberRequest{Name: f.p.Members[2].Name})
	wantRefused(t, err, 403, "not etcd-member-master-2's")
	// Without etcd access the signer says so.
	_, err = cl.AddMember(context.Background(), MemberRequest{Name: m1.Name})
	wantRefused(t, err, 503, "no etcd access")
}

func TestStopsAtTTL(t *testing.T) {
	f := startSigner(t, func(c *Config) { c.TTL = 300 * time.Millisecond })
	select {
	case r := <-f.done:
		if r != StopTTL {
			t.Fatalf("stop reason %q", r)
		}
		f.done <- r // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("signer still running after its TTL")
	}
}

func TestStopsAtFullMembership(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	p := &plan.Plan{Version: 1, Cluster: plan.Cluster{Name: "t"}, Survivor: "m0"}
	for _, m := range c.Members {
		p.Members = append(p.Members, plan.Member{Name: m.Spec.Name, PeerURL: m.Spec.PeerURL, ClientURL: m.Spec.ClientURL})
	}
	_, tokens, err := NewTokens([]string{"m1", "m2"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Plan: p, CA: c.PKI.CA, Tokens: tokens, Etcd: c.Client(t), Interval: 100 * time.Millisecond, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := srv.Serve(context.Background(), ln)
	if err != nil || r != StopFullMembership {
		t.Fatalf("Serve = %q, %v", r, err)
	}
	t.Logf("stopped after %s", time.Since(start))
}

func TestInstallUninstall(t *testing.T) {
	root := t.TempDir()
	paths, err := Install(root, InstallOptions{Args: []string{"--ttl", "3h"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Fatalf("installed %v", paths)
	}
	unit, err := os.ReadFile(filepath.Join(root, UnitPath))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/var/lib/etcd-rescue/bin/etcd-rescue signer --root / --plan /etc/etcd-rescue/plan.yaml --listen :9943 --remove-when-done --ttl 3h") {
		t.Errorf("unit:\n%s", unit)
	}
	if l, err := os.Readlink(filepath.Join(root, UnitWantsPath)); err != nil || l != "../etcd-rescue-signer.service" {
		t.Errorf("wants link = %q, %v", l, err)
	}
	if _, err := Install(root, InstallOptions{}); err != nil {
		t.Fatalf("second install: %v", err)
	}
	if _, err := Install(root, InstallOptions{Kind: KindStaticPod}); err == nil {
		t.Error("static pod without image accepted")
	}
	if _, err := Install(root, InstallOptions{Kind: KindStaticPod, Image: "quay.io/coreos/etcd:v3.5.17"}); err != nil {
		t.Fatal(err)
	}
	removed, err := Uninstall(root)
	if err != nil || len(removed) != 3 {
		t.Fatalf("Uninstall = %v, %v", removed, err)
	}
	for _, rel := range []string{UnitPath, UnitWantsPath, PodPath} {
		if _, err := os.Lstat(filepath.Join(root, rel)); err == nil {
			t.Errorf("%s still there", rel)
		}
	}
}

func TestTokenFiles(t *testing.T) {
	dir := t.TempDir()
	p := testPlan(t)
	plain, err := GenerateTokens(p, filepath.Join(dir, "tokens.json"), filepath.Join(dir, "tokens.txt"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != 2 {
		t.Fatalf("tokens for %d members, want 2 (all but the survivor)", len(plain))
	}
	for _, f := range []string{"tokens.json", "tokens.txt"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", f, fi.Mode(), err)
		}
	}
	store, _ := os.ReadFile(filepath.Join(dir, "tokens.json"))
	for n, tok := range plain {
		if strings.Contains(string(store), tok) {
			t.Errorf("store holds %s's token in clear", n)
		}
		got, err := ReadToken(filepath.Join(dir, "tokens.txt"), n)
		if err != nil || got != tok {
			t.Errorf("ReadToken(%s) = %q, %v", n, got, err)
		}
	}
	one := filepath.Join(dir, "one")
	os.WriteFile(one, []byte(plain[p.Members[1].Name]+"\n"), 0o600)
	if got, _ := ReadToken(one, "any"); got != plain[p.Members[1].Name] {
		t.Errorf("single-token file read as %q", got)
	}
	ts, err := LoadTokens(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.check(p.Members[1].Name, plain[p.Members[1].Name], "k", time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestStaleStoreNameOutsidePlan: a store with a valid token for a name the
// plan no longer has refuses it after the token check, without listing the
// plan's members.
func TestStaleStoreNameOutsidePlan(t *testing.T) {
	var stale string
	f := startSigner(t, func(c *Config) {
		plain, store, err := NewTokens([]string{c.Plan.Members[1].Name, "etcd-member-removed"}, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		c.Tokens, stale = store, plain["etcd-member-removed"]
	})
	req, _ := f.request(t, 1)
	req.Name, req.Token = "etcd-member-removed", stale
	_, err := f.client(t).Certificates(context.Background(), req)
	wantRefused(t, err, 403, `member "etcd-member-removed" is not in the recovery plan`)
	for _, m := range f.p.Members {
		if strings.Contains(err.Error(), m.Name) {
			t.Errorf("refusal names member %s: %v", m.Name, err)
		}
	}
}

func TestRefusesToStartWithNothingToIssue(t *testing.T) {
	p := testPlan(t)
	ca, err := pki.NewCA("etcd-signer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	_, expired, err := NewTokens([]string{p.Members[1].Name, p.Members[2].Name}, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "tokens.json")
	if err := expired.Save(store); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Plan: p, CA: ca, Tokens: expired, Now: func() time.Time { return now }})
	if err == nil {
		t.Fatal("signer started with every token expired")
	}
	for _, want := range []string{"every unused bootstrap token in token store " + store + " expired", "etcd-rescue signer tokens --plan", "--token-store"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	empty := &TokenStore{Tokens: map[string]*TokenRecord{}}
	if _, err := New(Config{Plan: p, CA: ca, Tokens: empty}); err == nil || !strings.Contains(err.Error(), "holds no bootstrap tokens") {
		t.Errorf("empty store: err = %v", err)
	}
	// Every token used: the masters have their certificates, the signer
	// still adds and promotes them.
	used := time.Now()
	for _, r := range expired.Tokens {
		r.Used = &used
	}
	if _, err := New(Config{Plan: p, CA: ca, Tokens: expired, Now: func() time.Time { return now }}); err != nil {
		t.Errorf("every token used: %v", err)
	}
	for _, r := range expired.Tokens {
		r.Used = nil
	}
	// One token still valid is enough: the signer starts.
	_, mixed, _ := NewTokens([]string{p.Members[1].Name}, now.Add(time.Minute))
	mixed.Tokens[p.Members[2].Name] = expired.Tokens[p.Members[2].Name]
	if _, err := New(Config{Plan: p, CA: ca, Tokens: mixed, Now: func() time.Time { return now }}); err != nil {
		t.Errorf("one valid token: %v", err)
	}
}

// TestInstallInsideTheRoot installs on a master whose /etc is an absolute
// symlink: the files land at the link's target inside the root, as the
// master sees them, and nothing is written at the host's own path.
func TestInstallInsideTheRoot(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	if err := os.MkdirAll(filepath.Join(root, "sysroot/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// As the master sees it, /etc is /sysroot/etc; on the rescue host the
	// same link would point at the host's own /sysroot/etc.
	if err := os.Symlink("/sysroot/etc", filepath.Join(root, "etc")); err != nil {
		t.Fatal(err)
	}
	paths, err := Install(root, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if !strings.HasPrefix(p, filepath.Join(root, "sysroot/etc")+"/") {
			t.Errorf("installed %s, outside the root's /sysroot/etc", p)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "sysroot", UnitPath)); err != nil {
		t.Errorf("unit not at the link's target inside the root: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(root, "sysroot", UnitWantsPath)); err != nil || l != "../etcd-rescue-signer.service" {
		t.Errorf("wants link = %q, %v", l, err)
	}
	removed, err := Uninstall(root)
	if err != nil || len(removed) != 2 {
		t.Fatalf("Uninstall = %v, %v", removed, err)
	}
	for _, p := range removed {
		if !strings.HasPrefix(p, root+"/") {
			t.Errorf("removed %s, outside the root", p)
		}
	}
}

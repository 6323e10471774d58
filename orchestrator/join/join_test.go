package join

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	clientsnap "go.etcd.io/etcd/client/v3/snapshot"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/syncbuf"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

const nKeys = 300

// env is a restored one-member cluster with a signer, and a plan for two
// more masters on 127.0.0.1.
type env struct {
	pki       *etcdtest.PKI
	plan      *plan.Plan
	prof      *profile.Profile
	survivor  *etcdtest.Member
	tokens    map[string]string
	signerLog *syncbuf.Buffer
	stopped   chan signer.StopReason
}

// restoredSurvivor writes keys into a cluster, snapshots it and restores
// the snapshot as a new one-member cluster, as the restore of the survivor
// does, then starts it.
func restoredSurvivor(t *testing.T, p *etcdtest.PKI, m plan.Member) *etcdtest.Member {
	t.Helper()
	peer := etcdtest.FreeURL(t)
	old := p.Start(t, etcdtest.MemberSpec{Name: "old", DataDir: filepath.Join(t.TempDir(), "old"), PeerURL: peer,
		ClientURL: etcdtest.FreeURL(t), InitialCluster: "old=" + peer, State: "new", Token: "old"})
	etcdtest.PutKeys(t, p.Client(t, old.Spec.ClientURL), 0, nKeys)
	db := filepath.Join(t.TempDir(), "snapshot.db")
	if _, err := clientsnap.SaveWithVersion(context.Background(), zap.NewNop(), clientv3.Config{
		Endpoints: []string{old.Spec.ClientURL}, TLS: p.ClientTLS(t), DialTimeout: 5 * time.Second,
	}, db); err != nil {
		t.Fatal(err)
	}
	old.Stop()
	dataDir := filepath.Join(t.TempDir(), "etcd")
	if err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath: db, Name: m.Name, OutputDataDir: dataDir, PeerURLs: []string{m.PeerURL},
		InitialCluster: plan.InitialCluster(m), InitialClusterToken: "etcd-cluster-1", RevisionBump: 1000, MarkCompacted: true,
	}); err != nil {
		t.Fatal(err)
	}
	return p.Start(t, etcdtest.MemberSpec{Name: m.Name, DataDir: dataDir, PeerURL: m.PeerURL, ClientURL: m.ClientURL})
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{pki: etcdtest.NewPKI(t), signerLog: &syncbuf.Buffer{}, stopped: make(chan signer.StopReason, 1)}
	e.prof, _ = profile.Get(profile.OpenShift43)
	p := &plan.Plan{Version: plan.Version, Cluster: plan.Cluster{Name: "test", Domain: "test.example.com"},
		Profile: profile.OpenShift43, Survivor: "etcd-member-master-0"}
	for i := 0; i < 3; i++ {
		p.Members = append(p.Members, plan.Member{
			Name: fmt.Sprintf("etcd-member-master-%d", i), Host: fmt.Sprintf("master-%d", i), IP: "127.0.0.1",
			DNSName: fmt.Sprintf("etcd-%d.test.example.com", i), PeerURL: etcdtest.FreeURL(t), ClientURL: etcdtest.FreeURL(t),
		})
	}
	p.Signer.Address = etcdtest.FreeURL(t)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	e.plan = p
	e.survivor = restoredSurvivor(t, e.pki, p.Members[0])

	plain, store, err := signer.NewTokens([]string{p.Members[1].Name, p.Members[2].Name}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.tokens = plain
	srv, err := signer.New(signer.Config{Plan: p, CA: e.pki.CA, Tokens: store, Profile: e.prof,
		Etcd: e.pki.Client(t, p.Members[0].ClientURL), Interval: 200 * time.Millisecond, TTL: 5 * time.Minute,
		Log: log.New(e.signerLog, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(p.Signer.Address)
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r, err := srv.Serve(ctx, ln)
		if err != nil {
			t.Error(err)
		}
		e.stopped <- r
	}()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// openshiftManifest is a trimmed OpenShift 4.3 etcd-member.yaml: etcd runs
// from a start script that sources /etc/etcd/etcd.conf and discovers its
// peers by DNS SRV.
const openshiftManifest = `apiVersion: v1
kind: Pod
metadata:
  name: etcd-member
  namespace: openshift-etcd
spec:
  initContainers:
  - name: discovery
    args:
    - "run"
    - "--discovery-srv=test.example.com"
    - "--output-file=/run/etcd/environment"
  containers:
  - name: etcd-member
    image: "quay.io/openshift/etcd:4.3"
    command:
    - /bin/sh
    - -c
    - |
      #!/bin/sh
      set -euo pipefail
      source /run/etcd/environment
      set -a
      source /etc/etcd/etcd.conf
      set +a
      exec etcd \
        --discovery-srv test.example.com \
        --initial-advertise-peer-urls=https://${ETCD_IPV4_ADDRESS}:2380 \
        --cert-file=/etc/ssl/etcd/system:etcd-server:${ETCD_DNS_NAME}.crt \
        --listen-peer-urls=https://0.0.0.0:2380
`

const etcdConf = "#[member]\nETCD_SNAPSHOT_COUNT=100000\nETCD_HEARTBEAT_INTERVAL=100\n"

// oldMaster writes what a reinstalled master has before the join: an etcd
// manifest, etcd.conf, a data dir of a former cluster and stale certificates.
func oldMaster(t *testing.T, prof *profile.Profile, m plan.Member) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(prof.Manifest, openshiftManifest)
	write(prof.EnvFile, etcdConf)
	write(filepath.Join(prof.DataDir, "member/snap/db"), "old cluster")
	c, k := prof.MemberCert("peer", signer.CertIdentity(m))
	write(c, "old cert")
	write(k, "old key")
	return root
}

// startEtcd plays the kubelet: it starts etcd from what join wrote under
// root (the recover block, the certificates, the data dir).
func startEtcd(t *testing.T, e *env, root string, m plan.Member) *embed.Etcd {
	t.Helper()
	mc, err := readMemberConfig(root, e.prof)
	if err != nil {
		t.Fatal(err)
	}
	// The manifest passes --initial-advertise-peer-urls itself, so the
	// recover block leaves it out.
	if mc.Name != m.Name || mc.State != "existing" || (mc.PeerURL != "" && mc.PeerURL != m.PeerURL) {
		t.Fatalf("written config = %+v", mc)
	}
	id := signer.CertIdentity(m)
	sc, sk := e.prof.MemberCert("server", id)
	pc, pk := e.prof.MemberCert("peer", id)
	ca := filepath.Join(root, e.prof.CACert)
	cfg := e.pki.Config(t, etcdtest.MemberSpec{Name: mc.Name, DataDir: filepath.Join(root, e.prof.DataDir), PeerURL: m.PeerURL,
		ClientURL: m.ClientURL, InitialCluster: mc.InitialCluster, State: mc.State,
		CertFile: filepath.Join(root, sc), KeyFile: filepath.Join(root, sk)})
	cfg.ClientTLSInfo.TrustedCAFile = ca
	cfg.PeerTLSInfo = transport.TLSInfo{CertFile: filepath.Join(root, pc), KeyFile: filepath.Join(root, pk), TrustedCAFile: ca, ClientCertAuth: true}
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	t.Cleanup(srv.Close)
	// Like the kubelet, do not wait for it: join's wait step does.
	select {
	case err := <-srv.Err():
		t.Fatalf("etcd %s: %v", m.Name, err)
	case <-time.After(100 * time.Millisecond):
	}
	return srv
}

// readMemberConfig reads back what join wrote under root: the flags a
// list-form manifest passes, overlaid with the recover block of the
// environment file.
func readMemberConfig(root string, prof *profile.Profile) (manifest.Member, error) {
	m, err := manifest.Load(filepath.Join(root, prof.Manifest))
	if err != nil {
		return manifest.Member{}, err
	}
	c := manifest.Member{Name: m.Flag("name"), InitialCluster: m.Flag("initial-cluster"),
		State: m.Flag("initial-cluster-state"), PeerURL: m.Flag("initial-advertise-peer-urls")}
	if prof.EnvFile != "" {
		b, err := os.ReadFile(filepath.Join(root, prof.EnvFile))
		if err != nil {
			return c, err
		}
		block, _ := manifest.ReadRecoverBlock(b)
		for _, f := range [][2]*string{{&c.Name, &block.Name}, {&c.InitialCluster, &block.InitialCluster}, {&c.State, &block.State}, {&c.PeerURL, &block.PeerURL}} {
			if *f[1] != "" {
				*f[0] = *f[1]
			}
		}
	}
	if c.Name == "" || c.InitialCluster == "" {
		return c, fmt.Errorf("%s sets no member name and initial cluster", prof.Manifest)
	}
	return c, nil
}

func (e *env) options(root string, m plan.Member, out *bytes.Buffer) Options {
	return Options{Root: root, Plan: e.plan, Member: plan.Member{Name: m.Name}, Token: e.tokens[m.Name], Out: out,
		WaitInterval: 200 * time.Millisecond, WaitTimeout: time.Minute}
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

// TestGrowToFullMembership is the whole growth: a restored one-member
// cluster, the signer, and two new masters joining one after the other.
func TestGrowToFullMembership(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	m1, m2 := e.plan.Members[1], e.plan.Members[2]

	// Master 1 was reinstalled and still has etcd state of the old cluster
	// and the CA certificate.
	root1 := oldMaster(t, e.prof, m1)
	caPEM, _ := os.ReadFile(e.pki.CAFile)
	os.WriteFile(filepath.Join(root1, e.prof.CACert), caPEM, 0o644)

	var out bytes.Buffer
	o := e.options(root1, m1, &out)
	o.DryRun = true
	if err := Run(ctx, o); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	mustContain(t, "dry run", out.String(), "would run: move etc/kubernetes/manifests/etcd-member.yaml", "JOIN-DRY-RUN")
	if b, _ := os.ReadFile(filepath.Join(root1, e.prof.Manifest)); string(b) != openshiftManifest {
		t.Fatal("dry run changed the manifest")
	}

	// A wrong token gets no certificate, and the signer logs the refusal.
	out.Reset()
	o = e.options(root1, m1, &out)
	o.Token, o.NoWait = "not-the-token", true
	if err := Run(ctx, o); err == nil || !strings.Contains(err.Error(), "wrong bootstrap token") {
		t.Fatalf("wrong token: err = %v\n%s", err, out.String())
	}
	mustContain(t, "output", out.String(), "JOIN-FAILED: step certificates: signer refused (HTTP 403): wrong bootstrap token")
	c1, _ := e.prof.MemberCert("peer", signer.CertIdentity(m1))
	if _, err := os.Stat(filepath.Join(root1, c1)); err == nil {
		t.Fatal("a certificate exists after the refusal")
	}
	mustContain(t, "signer log", e.signerLog.String(), `refused POST /v1/certificates`, "wrong bootstrap token")

	// A master asking for an address the plan does not give it is refused too.
	out.Reset()
	bad := Options{Root: t.TempDir(), Profile: e.prof, Member: plan.Member{Name: m1.Name, DNSName: m1.DNSName, PeerURL: "https://10.0.0.99:2380"}, Endpoints: []string{m1.ClientURL},
		Signer: e.plan.Signer.Address, Token: e.tokens[m1.Name], CACert: e.pki.CAFile, NoWait: true, Out: &out}
	if err := Run(ctx, bad); err == nil || !strings.Contains(err.Error(), "SAN 10.0.0.99") {
		t.Fatalf("foreign SAN: err = %v\n%s", err, out.String())
	}

	// A signer that is not up yet is retried, within bounds.
	out.Reset()
	down := bad
	down.Root, down.Member.DNSName, down.Member.PeerURL, down.Signer, down.SignerTimeout = t.TempDir(), m1.DNSName, m1.PeerURL, etcdtest.FreeURL(t), time.Second
	if err := Run(ctx, down); err == nil || !strings.Contains(out.String(), "certificates: signer not ready") {
		t.Fatalf("signer down: err = %v\n%s", err, out.String())
	}

	// The real join of master 1: configure, start etcd, wait.
	t0 := time.Now()
	out.Reset()
	o = e.options(root1, m1, &out)
	o.NoWait = true
	if err := Run(ctx, o); err != nil {
		t.Fatalf("join 1: %v\n%s", err, out.String())
	}
	mustContain(t, "join 1", out.String(), "JOIN-OK")
	manifest, _ := os.ReadFile(filepath.Join(root1, e.prof.Manifest))
	if strings.Contains(string(manifest), "--discovery-srv test.example.com") || !strings.Contains(string(manifest), `"--discovery-srv=test.example.com"`) {
		t.Fatalf("manifest not patched as the recovery script does:\n%s", manifest)
	}
	conf, _ := os.ReadFile(filepath.Join(root1, e.prof.EnvFile))
	mustContain(t, "etcd.conf", string(conf), etcdConf, "#[recover]\nETCD_NAME=\""+m1.Name+"\"", `ETCD_INITIAL_CLUSTER_STATE="existing"`)
	backups, _ := filepath.Glob(filepath.Join(root1, "var/lib/etcd-rescue/backup/*/var/lib/etcd/member/snap/db"))
	if len(backups) != 1 {
		t.Fatalf("old data dir not kept: %v", backups)
	}
	ts := time.Now()
	startEtcd(t, e, root1, m1)
	t.Logf("etcd 1 started in %s", time.Since(ts))
	out.Reset()
	o = e.options(root1, m1, &out)
	if err := Run(ctx, o); err != nil {
		t.Fatalf("join 1 wait: %v\n%s", err, out.String())
	}
	mustContain(t, "join 1 wait", out.String(), "step 1/6 keep-old-state: skipped", "step 4/6 member-add: skipped", "step 6/6 wait-healthy: ", "JOIN-OK")
	// The wait either ran or found the member healthy already (etcd may
	// publish and the signer promote within the first look).
	if strings.Contains(out.String(), "wait-healthy: started") {
		mustContain(t, "join 1 wait", out.String(), "wait: voting, HashKV")
	}
	t.Logf("master 1 joined in %s", time.Since(t0).Round(time.Millisecond))

	// Master 2 is fresh: no CA (it pins it), no manifest (it gets a new one).
	// Its first run is killed right after the member add.
	t0 = time.Now()
	root2 := t.TempDir()
	out.Reset()
	o = e.options(root2, m2, &out)
	o.CAHash, o.Image, o.NoWait = signer.SPKIHash(e.pki.CA.Cert), "quay.io/coreos/etcd:v3.7.3", true
	kctx, kill := context.WithCancel(ctx)
	o.AfterStep = func(name string) {
		if name == "member-add" {
			kill()
		}
	}
	if err := Run(kctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("killed run: err = %v\n%s", err, out.String())
	}
	list, err := members.List(ctx, e.pki.Client(t, e.plan.Members[0].ClientURL))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || members.CheckPending(list, nil) == nil {
		t.Fatalf("after the kill: %v", list)
	}
	out.Reset()
	o.AfterStep = nil
	if err := Run(ctx, o); err != nil {
		t.Fatalf("join 2 re-run: %v\n%s", err, out.String())
	}
	mustContain(t, "join 2 re-run", out.String(), "member-add: skipped", "write-config: started")
	startEtcd(t, e, root2, m2)
	out.Reset()
	o.NoWait = false
	if err := Run(ctx, o); err != nil {
		t.Fatalf("join 2 wait: %v\n%s", err, out.String())
	}
	t.Logf("master 2 joined in %s; wait output:\n%s", time.Since(t0).Round(time.Millisecond), out.String())

	// The signer sees the full membership and stops by itself.
	select {
	case r := <-e.stopped:
		if r != signer.StopFullMembership {
			t.Fatalf("signer stopped: %s", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("signer still running at full membership; log:\n%s", e.signerLog)
	}
	mustContain(t, "signer log", e.signerLog.String(), "full membership: 3 voting members")
	// The signer and the joining master's wait both promote a caught-up
	// learner; whichever looks first does it (as in e2e_test.go).
	if !strings.Contains(e.signerLog.String(), "promoted learner") && !strings.Contains(out.String(), "promoted to a voting member") {
		t.Errorf("no promotion reported; signer log:\n%s\njoin 2 wait:\n%s", e.signerLog, out.String())
	}

	// Three voting members, every key on every member, equal HashKV.
	cli := e.pki.Client(t, e.plan.Members[0].ClientURL)
	list, err = members.List(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if miss := members.Missing(e.plan, list); len(miss) != 0 || len(list) != 3 {
		t.Fatalf("members %v, missing %v", list, miss)
	}
	var rev int64
	var hash uint32
	for i, m := range e.plan.Members {
		etcdtest.CheckKeys(t, e.pki.Client(t, m.ClientURL), 0, nKeys)
		if i == 0 {
			h, err := cli.HashKV(ctx, m.ClientURL, 0)
			if err != nil {
				t.Fatal(err)
			}
			rev, hash = h.Header.Revision, h.Hash
			continue
		}
		h, err := cli.HashKV(ctx, m.ClientURL, rev)
		if err != nil {
			t.Fatal(err)
		}
		if h.Hash != hash {
			t.Errorf("%s HashKV %d at revision %d, survivor %d", m.Name, h.Hash, rev, hash)
		}
	}

	// A second run changes nothing.
	before := snapshotFiles(t, root2)
	out.Reset()
	if err := Run(ctx, o); err != nil {
		t.Fatalf("second run: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), ": skipped: already done"); n != 6 {
		t.Fatalf("second run did not skip all 6 steps:\n%s", out.String())
	}
	if after := snapshotFiles(t, root2); before != after {
		t.Fatalf("second run changed files:\n%s\n---\n%s", before, after)
	}
	list2, _ := members.List(ctx, cli)
	if fmt.Sprint(list2) != fmt.Sprint(list) {
		t.Fatalf("second run changed members: %v -> %v", list, list2)
	}
}

// snapshotFiles lists the join's files (not the journal, not etcd's data)
// with size and modification time.
func snapshotFiles(t *testing.T, root string) string {
	var b strings.Builder
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, "var/lib/etcd/") || strings.HasSuffix(p, "state.json") {
			return nil
		}
		fi, _ := d.Info()
		fmt.Fprintf(&b, "%s %d %s\n", p, fi.Size(), fi.ModTime())
		return nil
	})
	return b.String()
}

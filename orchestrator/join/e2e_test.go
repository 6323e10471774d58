package join_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/fixture"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/syncbuf"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/join"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

// kubelet starts a real etcd process the way the master's manifest says
// (command, flags, environment, sourced files), without waiting for it.
func kubelet(t *testing.T, root string, prof *profile.Profile, m fixture.Master) *etcdtest.Process {
	t.Helper()
	mf, err := manifest.Load(filepath.Join(root, prof.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := mf.Invocation(manifest.Runtime{
		Root:     root,
		NodeName: m.NodeName,
		Files:    map[string]string{"/run/etcd/environment": m.RunEnvironment()},
	})
	if err != nil {
		t.Fatalf("manifest of %s: %v", m.MemberName, err)
	}
	argv, env := inv.OnHost(root)
	p := etcdtest.StartProcess(t, argv, env)
	t.Cleanup(p.Stop)
	return p
}

func port(t *testing.T) int {
	u, _ := url.Parse(etcdtest.FreeURL(t))
	n, _ := strconv.Atoi(u.Port())
	return n
}

func newMaster(t *testing.T, prof string, i int) fixture.Master {
	node := fmt.Sprintf("master-%d.test.example.com", i)
	name := fmt.Sprintf("master-%d", i) // kubeadm names members after nodes
	if prof == profile.OpenShift43 {
		name = "etcd-member-" + node // from the static pod's name
	}
	return fixture.Master{
		Profile: prof, NodeName: node, MemberName: name,
		IP: "127.0.0.1", DNSName: fmt.Sprintf("etcd-%d.test.example.com", i), ClusterDomain: "test.example.com",
		ListenIP: "127.0.0.1", ClientPort: port(t), PeerPort: port(t), MetricsPort: port(t),
	}
}

func planMember(m fixture.Master) plan.Member {
	return plan.Member{Name: m.MemberName, Host: m.NodeName, IP: m.IP, DNSName: m.DNSName, PeerURL: m.PeerURL(), ClientURL: m.ClientURL()}
}

// TestGrowFromRestoredMaster runs the whole second half of the recovery with
// real etcd processes started from the manifests the tools wrote: the
// survivor restored from a backup, the signer set up from its root, and two
// new masters joining one after the other (the first a reinstalled master
// with old etcd state, the second a fresh one whose first join is killed
// right after the member add), for each master layout.
func TestGrowFromRestoredMaster(t *testing.T) {
	for _, prof := range profile.Names() {
		t.Run(prof, func(t *testing.T) { growFromRestoredMaster(t, prof) })
	}
}

func growFromRestoredMaster(t *testing.T, profName string) {
	start := time.Now()
	ctx := context.Background()
	const keys = 1000
	s := disaster.Stage(t, disaster.Options{Profile: profName, Keys: keys, Lost: 50})
	var out bytes.Buffer
	if err := restore.Run(ctx, restore.Options{Root: s.Root, BackupDir: s.BackupDir, Member: s.Member(),
		Out: &out, DialTimeout: 200 * time.Millisecond}); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	survivor := kubelet(t, s.Root, s.Profile, s.Master)
	cli := s.PKI.Client(t, s.Master.ClientURL())
	etcdtest.WaitHealthy(t, cli, survivor, time.Minute)
	t.Logf("survivor restored and serving after %s", time.Since(start).Round(time.Millisecond))

	m1, m2 := newMaster(t, profName, 1), newMaster(t, profName, 2)
	p := &plan.Plan{Version: plan.Version, Cluster: plan.Cluster{Name: "test", Domain: "test.example.com"},
		Profile: profName, Survivor: s.Master.MemberName,
		Members: []plan.Member{planMember(s.Master), planMember(m1), planMember(m2)}}
	p.Signer.Address = etcdtest.FreeURL(t)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}

	// The signer, as the installed unit runs it on the survivor's root.
	state := t.TempDir()
	signerLog := &syncbuf.Buffer{}
	st, err := signer.FromRoot(signer.RootOptions{Root: s.Root, Plan: p, TokenStore: filepath.Join(state, "tokens.json"),
		TokensOut: filepath.Join(state, "tokens.txt"), Log: log.New(signerLog, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Etcd.Close()
	u, _ := url.Parse(p.Signer.Address)
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan signer.StopReason, 1)
	go func() {
		r, err := st.Server.Serve(sctx, ln)
		if err != nil {
			t.Error(err)
		}
		stopped <- r
	}()
	tokenFile := filepath.Join(state, "tokens.txt")

	opts := func(root string, m fixture.Master) join.Options {
		tok, err := signer.ReadToken(tokenFile, m.MemberName)
		if err != nil {
			t.Fatal(err)
		}
		out.Reset()
		return join.Options{Root: root, Plan: p, Member: plan.Member{Name: m.MemberName}, Token: tok, Out: &out,
			WaitInterval: 200 * time.Millisecond, WaitTimeout: time.Minute}
	}

	// Master 1: reinstalled, with the CA certificate, its old certificates
	// and an old data dir.
	t1 := time.Now()
	root1 := t.TempDir()
	if _, err := fixture.Write(root1, m1, s.PKI.CA); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root1, s.Profile.CAKey)) // only the survivor holds it
	old := filepath.Join(root1, s.Profile.DataDir, "member/snap/db")
	os.MkdirAll(filepath.Dir(old), 0o700)
	os.WriteFile(old, []byte("old cluster"), 0o600)
	o := opts(root1, m1)
	o.NoWait = true
	if err := join.Run(ctx, o); err != nil {
		t.Fatalf("join 1: %v\n%s", err, out.String())
	}
	p1 := kubelet(t, root1, s.Profile, m1)
	o = opts(root1, m1)
	if err := join.Run(ctx, o); err != nil {
		t.Fatalf("join 1 wait: %v\n%s\netcd:\n%s", err, out.String(), p1.Output())
	}
	t.Logf("master 1 joined in %s", time.Since(t1).Round(time.Millisecond))

	// Master 2: fresh, pins the CA; its first run dies after the member add.
	t2 := time.Now()
	root2 := t.TempDir()
	o = opts(root2, m2)
	o.CAHash, o.Image, o.ListenIP, o.NoWait = st.CAHash, "quay.io/coreos/etcd:v3.7.3", "127.0.0.1", true
	kctx, kill := context.WithCancel(ctx)
	o.AfterStep = func(step string) {
		if step == "member-add" {
			kill()
		}
	}
	if err := join.Run(kctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("killed join 2: %v\n%s", err, out.String())
	}
	o.AfterStep = nil
	if err := join.Run(ctx, o); err != nil {
		t.Fatalf("join 2 re-run: %v\n%s", err, out.String())
	}
	p2 := kubelet(t, root2, s.Profile, m2)
	o.NoWait = false
	if err := join.Run(ctx, o); err != nil {
		t.Fatalf("join 2 wait: %v\n%s\netcd:\n%s", err, out.String(), p2.Output())
	}
	t.Logf("master 2 joined in %s", time.Since(t2).Round(time.Millisecond))

	select {
	case r := <-stopped:
		if r != signer.StopFullMembership {
			t.Fatalf("signer stopped: %s", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("signer still running at full membership:\n%s", signerLog)
	}

	list, err := members.List(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if miss := members.Missing(p, list); len(miss) > 0 || len(list) != 3 {
		t.Fatalf("members %v; missing %v", list, miss)
	}
	h0, err := cli.HashKV(ctx, s.Master.ClientURL(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []fixture.Master{s.Master, m1, m2} {
		etcdtest.CheckKeys(t, s.PKI.Client(t, m.ClientURL()), 0, keys)
		h, err := cli.HashKV(ctx, m.ClientURL(), h0.Header.Revision)
		if err != nil {
			t.Fatal(err)
		}
		if h.Hash != h0.Hash {
			t.Errorf("%s HashKV %d, survivor %d at revision %d", m.MemberName, h.Hash, h0.Hash, h0.Header.Revision)
		}
	}
	// The signer and the joining master's wait both promote a caught-up
	// learner; whichever comes first does it.
	if !strings.Contains(signerLog.String(), "promoted learner") && !strings.Contains(out.String(), "promoted to a voting member") {
		t.Errorf("no promotion reported; signer log:\n%s\njoin:\n%s", signerLog, out.String())
	}
	t.Logf("grown to 3 voting members with equal HashKV in %s", time.Since(start).Round(time.Millisecond))
}

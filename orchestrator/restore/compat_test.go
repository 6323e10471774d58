package restore_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/fixture"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

// compatMaster is a kubeadm master whose manifest names an etcd image.
type compatMaster struct {
	t    *testing.T
	root string
	m    fixture.Master
	fm   *fixture.Master
	pki  *etcdtest.PKI
}

func newCompatMaster(t *testing.T, image string) *compatMaster {
	c := &compatMaster{t: t, root: t.TempDir(), pki: etcdtest.NewPKI(t)}
	c.m = fixture.Master{
		Profile: profile.Kubeadm, NodeName: "master-0", MemberName: "master-0",
		IP: "127.0.0.1", ListenIP: "127.0.0.1", Image: image,
		ClientPort: port(t), PeerPort: port(t), MetricsPort: port(t),
	}
	fm, err := fixture.Write(c.root, c.m, c.pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	c.fm = fm
	return c
}

// command is what the kubelet would run for the manifest as it is now.
func (c *compatMaster) command() (argv, env []string) {
	mf, err := manifest.Load(filepath.Join(c.root, "etc/kubernetes/manifests/etcd.yaml"))
	if err != nil {
		c.t.Fatal(err)
	}
	inv, err := mf.Invocation(manifest.Runtime{Root: c.root, NodeName: c.m.NodeName})
	if err != nil {
		c.t.Fatal(err)
	}
	return inv.OnHost(c.root)
}

// start runs bin from the manifest and waits until it serves.
func (c *compatMaster) start(bin string) (*etcdtest.Process, *clientv3.Client) {
	argv, env := c.command()
	proc := etcdtest.StartBinary(c.t, bin, argv, env)
	cli := c.pki.Client(c.t, c.fm.ClientURL())
	etcdtest.WaitHealthy(c.t, cli, proc, time.Minute)
	return proc, cli
}

// backUp writes keys 0..n with bin running and backs the cluster up; it
// returns the backup folder and the highest revision clients saw.
func (c *compatMaster) backUp(bin string, n int) (string, int64) {
	t := c.t
	proc, cli := c.start(bin)
	etcdtest.PutKeys(t, cli, 0, n)
	ctx := context.Background()
	bdir := filepath.Join(t.TempDir(), "backup")
	if _, err := backup.Save(ctx, backup.SaveOptions{Client: etcdtest.ClientConfig(t, c.pki, c.fm.ClientURL()), Root: c.root,
		Profile: mustProfile(t, profile.Kubeadm), OutDir: bdir}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "health")
	if err != nil {
		t.Fatal(err)
	}
	proc.Stop()
	cli.Close()
	return bdir, resp.Header.Revision
}

func (c *compatMaster) restore(bdir, etcdVersion string, out *bytes.Buffer) error {
	return restore.Run(context.Background(), restore.Options{Root: c.root, BackupDir: bdir, EtcdVersion: etcdVersion,
		Member: plan.Member{Name: c.m.MemberName, PeerURL: c.fm.PeerURL()}, Out: out, DialTimeout: 200 * time.Millisecond})
}

// TestRestoreOpensInEachEtcdVersion runs, for each etcd version real
// clusters run, that version's own server from a kubeadm manifest, backs
// it up, restores the backup with etcd-rescue (which links etcd 3.7), and
// starts the same version again from the rewritten manifest: it must serve
// every key.
func TestRestoreOpensInEachEtcdVersion(t *testing.T) {
	for _, v := range etcdtest.CompatVersions {
		t.Run(v, func(t *testing.T) {
			bin := etcdtest.VersionBinary(t, v)
			image := "registry.k8s.io/etcd:" + v + "-0"
			c := newCompatMaster(t, image)
			bdir, maxRev := c.backUp(bin, 1000)

			var out bytes.Buffer
			if err := c.restore(bdir, "", &out); err != nil {
				t.Fatalf("restore for etcd %s: %v\n%s", v, err, out.String())
			}
			if want := "etcd version: " + v + " (from the manifest's image " + image + ")"; !strings.Contains(out.String(), want) {
				t.Errorf("the restore did not say %q:\n%s", want, out.String())
			}
			_, cli := c.start(bin)
			etcdtest.CheckKeys(t, cli, 0, 1000)
			ctx := context.Background()
			resp, err := cli.Get(ctx, "health")
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Revision <= maxRev {
				t.Errorf("etcd %s: revision %d not above %d", v, resp.Header.Revision, maxRev)
			}
			st, err := cli.Status(ctx, c.fm.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(st.Version, v[:3]) {
				t.Errorf("served by etcd %s, want %s", st.Version, v)
			}
		})
	}
}

// TestBackupFromNewerEtcdIsRefused: a backup taken while etcd 3.7 ran,
// restored on a master whose manifest runs 3.6, is refused before anything
// changes. The refusal is needed: forced past it (the operator claiming
// 3.7), the restored data dir does not open in etcd 3.6.
func TestBackupFromNewerEtcdIsRefused(t *testing.T) {
	c := newCompatMaster(t, "registry.k8s.io/etcd:3.6.16-0")
	bdir, _ := c.backUp(etcdtest.VersionBinary(t, "3.7.3"), 100)

	before := disaster.TreeHash(t, c.root)
	var out bytes.Buffer
	err := c.restore(bdir, "", &out)
	if err == nil || !strings.Contains(err.Error(), "the backup was written by etcd 3.7 but the master runs etcd 3.6.16") {
		t.Fatalf("err = %v, want a refusal of the downgrade\n%s", err, out.String())
	}
	if after := disaster.TreeHash(t, c.root); after != before {
		t.Fatal("a refused restore changed the root")
	}

	out.Reset()
	if err := c.restore(bdir, "3.7.3", &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	argv, env := c.command()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, etcdtest.VersionBinary(t, "3.6.16"), argv[1:]...)
	cmd.Env = env
	log, err := cmd.CombinedOutput()
	// etcd 3.6 refuses on the storage version 3.7 wrote into the backend
	// ("not supported"), or, when the backup was taken before 3.7 wrote
	// it, on the cluster version 3.7 in the membership ("invalid downgrade").
	refused := strings.Contains(string(log), `version \"3.7.0\" is not supported`) || strings.Contains(string(log), "invalid downgrade")
	if err == nil || !refused {
		t.Fatalf("etcd 3.6 opened a data dir restored from a 3.7 backup (err %v):\n%s", err, log)
	}
}

func mustProfile(t *testing.T, name string) *profile.Profile {
	p, err := profile.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func port(t *testing.T) int {
	u := etcdtest.FreeURL(t)
	var n int
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] == ':' {
			for _, c := range u[i+1:] {
				n = n*10 + int(c-'0')
			}
			break
		}
	}
	return n
}

// TestRestoreOpensInEtcd33OnOpenShift43 is the runbook's own setting: an
// OpenShift 4.3 master whose etcd-member pod runs etcd 3.3. etcd 3.3.27
// serves the survivor's data dir, is backed up and stopped; etcd-rescue
// restores the backup (reading the version from the image tag), and etcd
// 3.3 started exactly as the rewritten manifest's start script says (its
// environment file, the sourced etcd.conf, no discovery SRV) serves every
// key as a new one-member cluster.
func TestRestoreOpensInEtcd33OnOpenShift43(t *testing.T) {
	bin := etcdtest.VersionBinary(t, "3.3.27")
	image := "quay.io/coreos/etcd:v3.3.27"
	p := etcdtest.NewPKI(t)
	root := t.TempDir()
	prof := mustProfile(t, profile.OpenShift43)
	m := fixture.Master{
		Profile: profile.OpenShift43, NodeName: "master-0.test.example.com", MemberName: "etcd-member-master-0.test.example.com",
		IP: "127.0.0.1", ListenIP: "127.0.0.1", DNSName: "etcd-0.test.example.com", ClusterDomain: "test.example.com", Image: image,
		ClientPort: port(t), PeerPort: port(t), MetricsPort: port(t),
	}
	fm, err := fixture.Write(root, m, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	at := func(rel string) string { return filepath.Join(root, rel) }
	serverCert, serverKey := prof.MemberCert("server", fm.DNSName)
	peerCert, peerKey := prof.MemberCert("peer", fm.DNSName)

	// The cluster as it ran: etcd 3.3 on the master's data dir and certificates.
	old := etcdtest.StartBinary(t, bin, []string{"etcd",
		"--name", fm.MemberName, "--data-dir", at(prof.DataDir),
		"--initial-cluster", fm.MemberName + "=" + fm.PeerURL(), "--initial-cluster-state", "new",
		"--initial-advertise-peer-urls", fm.PeerURL(), "--listen-peer-urls", fm.PeerURL(),
		"--advertise-client-urls", fm.ClientURL(), "--listen-client-urls", fm.ClientURL(),
		"--cert-file", at(serverCert), "--key-file", at(serverKey), "--trusted-ca-file", at(prof.CACert), "--client-cert-auth",
		"--peer-cert-file", at(peerCert), "--peer-key-file", at(peerKey), "--peer-trusted-ca-file", at(prof.CACert), "--peer-client-cert-auth",
	}, nil)
	cli := p.Client(t, fm.ClientURL())
	etcdtest.WaitHealthy(t, cli, old, time.Minute)
	etcdtest.PutKeys(t, cli, 0, 1000)
	ctx := context.Background()
	bdir := filepath.Join(t.TempDir(), "backup")
	if _, err := backup.Save(ctx, backup.SaveOptions{Client: etcdtest.ClientConfig(t, p, fm.ClientURL()), Root: root, Profile: prof, OutDir: bdir}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "health")
	if err != nil {
		t.Fatal(err)
	}
	maxRev := resp.Header.Revision
	old.Stop()
	cli.Close()

	var out bytes.Buffer
	if err := restore.Run(ctx, restore.Options{Root: root, BackupDir: bdir, Member: plan.Member{Name: fm.MemberName, PeerURL: fm.PeerURL()},
		Out: &out, DialTimeout: 200 * time.Millisecond}); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	if want := "etcd version: 3.3.27 (from the manifest's image " + image + ")"; !strings.Contains(out.String(), want) {
		t.Errorf("the restore did not say %q:\n%s", want, out.String())
	}

	mf, err := manifest.Load(at(prof.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := mf.Invocation(manifest.Runtime{Root: root, NodeName: fm.NodeName, Files: map[string]string{"/run/etcd/environment": fm.RunEnvironment()}})
	if err != nil {
		t.Fatal(err)
	}
	argv, env := inv.OnHost(root)
	restored := etcdtest.StartBinary(t, bin, argv, env)
	cli = p.Client(t, fm.ClientURL())
	etcdtest.WaitHealthy(t, cli, restored, time.Minute)
	etcdtest.CheckKeys(t, cli, 0, 1000)
	st, err := cli.Status(ctx, fm.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Version, "3.3.") {
		t.Errorf("served by etcd %s, want 3.3", st.Version)
	}
	if st.Header.Revision <= maxRev {
		t.Errorf("revision %d not above %d", st.Header.Revision, maxRev)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 1 || ml.Members[0].Name != fm.MemberName {
		t.Errorf("members = %v, want only %s", ml.Members, fm.MemberName)
	}
}

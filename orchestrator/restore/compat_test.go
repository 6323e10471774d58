package restore_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/fixture"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

// TestRestoreOpensInEachEtcdVersion runs, for each etcd version real
// clusters run, that version's own server from a kubeadm manifest, backs
// it up, restores the backup with etcd-rescue (which links etcd 3.7), and
// starts the same version again from the rewritten manifest: it must serve
// every key.
func TestRestoreOpensInEachEtcdVersion(t *testing.T) {
	for _, v := range etcdtest.CompatVersions {
		t.Run(v, func(t *testing.T) {
			bin := etcdtest.VersionBinary(t, v)
			p := etcdtest.NewPKI(t)
			root := t.TempDir()
			m := fixture.Master{
				Profile: profile.Kubeadm, NodeName: "master-0", MemberName: "master-0",
				IP: "127.0.0.1", ListenIP: "127.0.0.1", Image: "registry.k8s.io/etcd:" + v + "-0",
				ClientPort: port(t), PeerPort: port(t), MetricsPort: port(t),
			}
			fm, err := fixture.Write(root, m, p.CA)
			if err != nil {
				t.Fatal(err)
			}
			start := func() {
				mf, err := manifest.Load(filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				inv, err := mf.Invocation(manifest.Runtime{Root: root, NodeName: m.NodeName})
				if err != nil {
					t.Fatal(err)
				}
				argv, env := inv.OnHost(root)
				proc := etcdtest.StartBinary(t, bin, argv, env)
				cli := p.Client(t, fm.ClientURL())
				etcdtest.WaitHealthy(t, cli, proc, time.Minute)
			}

			// the cluster as it ran, in its own version
			mf, _ := manifest.Load(filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml"))
			inv, err := mf.Invocation(manifest.Runtime{Root: root, NodeName: m.NodeName})
			if err != nil {
				t.Fatal(err)
			}
			argv, env := inv.OnHost(root)
			old := etcdtest.StartBinary(t, bin, argv, env)
			cli := p.Client(t, fm.ClientURL())
			etcdtest.WaitHealthy(t, cli, old, time.Minute)
			etcdtest.PutKeys(t, cli, 0, 1000)
			ctx := context.Background()
			bdir := filepath.Join(t.TempDir(), "backup")
			if _, err := backup.Save(ctx, backup.SaveOptions{Client: etcdtest.ClientConfig(t, p, fm.ClientURL()), Root: root,
				Profile: mustProfile(t, profile.Kubeadm), OutDir: bdir}); err != nil {
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
			err = restore.Run(ctx, restore.Options{Root: root, BackupDir: bdir, Name: m.MemberName,
				InitialCluster: m.MemberName + "=" + fm.PeerURL(), Out: &out, DialTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatalf("restore for etcd %s: %v\n%s", v, err, out.String())
			}
			start()
			cli = p.Client(t, fm.ClientURL())
			etcdtest.CheckKeys(t, cli, 0, 1000)
			resp, err = cli.Get(ctx, "health")
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Revision <= maxRev {
				t.Errorf("etcd %s: revision %d not above %d", v, resp.Header.Revision, maxRev)
			}
			st, err := cli.Status(ctx, fm.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(st.Version, v[:3]) {
				t.Errorf("served by etcd %s, want %s", st.Version, v)
			}
		})
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

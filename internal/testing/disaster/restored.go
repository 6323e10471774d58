package disaster

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
)

// StartFromManifest starts a real etcd exactly as the manifest in root (the
// scene's master root after a restore, or a copy of it read back from a
// disk) tells the kubelet to: its command, flags, environment and the
// files its start script sources. It returns a client once etcd serves.
func (s *Scene) StartFromManifest(t testing.TB, root string) *clientv3.Client {
	t.Helper()
	m, err := manifest.Load(filepath.Join(root, s.Profile.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := m.Invocation(manifest.Runtime{
		Root:     root,
		NodeName: s.Master.NodeName,
		Files:    map[string]string{"/run/etcd/environment": s.Master.RunEnvironment()},
	})
	if err != nil {
		t.Fatal(err)
	}
	argv, env := inv.OnHost(root)
	p := etcdtest.StartProcess(t, argv, env)
	cli := s.PKI.Client(t, s.Master.ClientURL())
	etcdtest.WaitHealthy(t, cli, p, time.Minute)
	t.Cleanup(p.Stop)
	return cli
}

// CheckRestored checks that a restored member serves exactly the keys
// written before the backup, alone, under a new cluster ID, at a revision
// above the old cluster's, with the old revisions compacted. It returns
// the new cluster ID.
func (s *Scene) CheckRestored(t testing.TB, cli *clientv3.Client) uint64 {
	t.Helper()
	ctx := context.Background()
	etcdtest.CheckKeys(t, cli, 0, s.Keys)
	all, err := cli.Get(ctx, "/registry/test/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if all.Count != int64(s.Keys) {
		t.Errorf("%d keys, want exactly the %d written before the backup", all.Count, s.Keys)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 1 || ml.Members[0].Name != s.Master.MemberName {
		t.Errorf("members = %v, want only %s", ml.Members, s.Master.MemberName)
	}
	if ml.Header.ClusterId == s.ClusterID {
		t.Errorf("cluster ID %x is the old one", s.ClusterID)
	}
	if rev := all.Header.Revision; rev <= s.MaxRevision {
		t.Errorf("revision %d is not above the old cluster's %d: watchers would see it go back", rev, s.MaxRevision)
	}
	// Old revisions are compacted: a read there fails.
	if _, err := cli.Get(ctx, "/registry/test/key-000001", clientv3.WithRev(s.MaxRevision)); err == nil {
		t.Errorf("a read at the old revision %d succeeded; it must be compacted", s.MaxRevision)
	}
	return ml.Header.ClusterId
}

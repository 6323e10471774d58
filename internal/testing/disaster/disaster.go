// Package disaster stages, for tests, the situation etcd-rescue exists for:
// a three-member TLS etcd cluster whose first member's data dir lives in a
// realistic master root, a backup taken from it, writes made after the
// backup, and then the loss of every member.
package disaster

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/fixture"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/tmpdirs"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// Scene is a staged quorum loss.
type Scene struct {
	PKI *etcdtest.PKI
	// Root is the surviving master's root; its data dir holds member 0's data.
	Root      string
	Master    fixture.Master
	Profile   *profile.Profile
	BackupDir string
	Backup    *backup.Set
	// Keys were written before the backup; Lost more after it.
	Keys, Lost int
	// MaxRevision is the highest revision the old cluster reached.
	MaxRevision int64
	// ClusterID is the old cluster's ID.
	ClusterID uint64
	// OldPeers are the peer URLs of the two lost members.
	OldPeers []string
	// OldMembers are the two lost members; their data dirs are kept, so a
	// test can start the old cluster again.
	OldMembers []etcdtest.MemberSpec
}

// Options size a scene.
type Options struct {
	Profile string
	Keys    int // before the backup; default 10,000
	Lost    int // after the backup; default 500
}

// Stage builds a scene in temporary folders.
func Stage(t testing.TB, o Options) *Scene {
	t.Helper()
	if o.Keys == 0 {
		o.Keys = 10000
	}
	if o.Lost == 0 {
		o.Lost = 500
	}
	s := &Scene{PKI: etcdtest.NewPKI(t), Root: t.TempDir(), BackupDir: filepath.Join(t.TempDir(), "backup"), Keys: o.Keys, Lost: o.Lost}
	var err error
	if s.Profile, err = profile.Get(o.Profile); err != nil {
		t.Fatal(err)
	}
	peer0, client0 := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
	m := fixture.Master{
		Profile:       o.Profile,
		NodeName:      "master-0.test.example.com",
		IP:            "127.0.0.1",
		DNSName:       "etcd-0.test.example.com",
		ClusterDomain: "test.example.com",
		ListenIP:      "127.0.0.1",
		ClientPort:    port(client0),
		PeerPort:      port(peer0),
		MetricsPort:   port(etcdtest.FreeURL(t)),
	}
	m.MemberName = "master-0"
	if o.Profile == profile.OpenShift43 {
		m.MemberName = "etcd-member-" + m.NodeName
	}
	specs := []etcdtest.MemberSpec{{Name: m.MemberName, DataDir: filepath.Join(s.Root, s.Profile.DataDir), PeerURL: peer0, ClientURL: client0}}
	for i := 1; i < 3; i++ {
		specs = append(specs, etcdtest.MemberSpec{
			Name:      fmt.Sprintf("master-%d", i),
			DataDir:   filepath.Join(t.TempDir(), "etcd"),
			PeerURL:   etcdtest.FreeURL(t),
			ClientURL: etcdtest.FreeURL(t),
		})
		s.OldPeers = append(s.OldPeers, specs[i].PeerURL)
	}
	var ic []plan.Member
	for _, sp := range specs {
		ic = append(ic, plan.Member{Name: sp.Name, PeerURL: sp.PeerURL})
	}
	m.InitialCluster = plan.InitialCluster(ic...)
	fm, err := fixture.Write(s.Root, m, s.PKI.CA)
	if err != nil {
		t.Fatal(err)
	}
	s.Master = *fm
	// member 0 serves with the certificate the master's manifest names
	certName := m.DNSName
	specs[0].CertFile, specs[0].KeyFile = s.Profile.MemberCert("peer", certName)
	specs[0].CertFile = filepath.Join(s.Root, specs[0].CertFile)
	specs[0].KeyFile = filepath.Join(s.Root, specs[0].KeyFile)

	members := make([]*etcdtest.Member, 3)
	errs := make(chan error, 3)
	for i := range specs {
		specs[i].InitialCluster = m.InitialCluster
		specs[i].State = "new"
		specs[i].Token = "etcd-cluster-1"
		go func(i int) {
			var err error
			members[i], err = s.PKI.StartErr(t, specs[i])
			errs <- err
		}(i)
	}
	for range specs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	eps := []string{client0, specs[1].ClientURL, specs[2].ClientURL}
	cli := s.PKI.Client(t, eps...)
	etcdtest.PutKeys(t, cli, 0, o.Keys)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := etcdtest.ClientConfig(t, s.PKI, client0)
	s.Backup, err = backup.Save(ctx, backup.SaveOptions{Client: cfg, Root: s.Root, Profile: s.Profile, OutDir: s.BackupDir})
	if err != nil {
		t.Fatal(err)
	}
	etcdtest.PutKeys(t, cli, o.Keys, o.Keys+o.Lost)
	resp, err := cli.Get(ctx, "health")
	if err != nil {
		t.Fatal(err)
	}
	s.MaxRevision = resp.Header.Revision
	s.ClusterID = resp.Header.ClusterId
	// Let member 0 apply everything before the loss, as a healthy member would.
	if _, err := s.PKI.Client(t, client0).Get(ctx, "health"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	for _, mb := range members {
		mb.Stop()
	}
	s.OldMembers = specs[1:]
	return s
}

// Copy returns a scene whose root and backup are fresh copies, so several
// tests can start from the same staged loss.
func (s *Scene) Copy(t testing.TB) *Scene {
	t.Helper()
	c := *s
	c.Root = filepath.Join(t.TempDir(), "root")
	c.BackupDir = filepath.Join(t.TempDir(), "backup")
	for _, pair := range [][2]string{{s.Root, c.Root}, {s.BackupDir, c.BackupDir}} {
		if out, err := exec.Command("cp", "-a", pair[0], pair[1]).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v\n%s", pair[0], err, out)
		}
	}
	return &c
}

// Member is the survivor as restore takes it.
func (s *Scene) Member() plan.Member {
	return plan.Member{Name: s.Master.MemberName, Host: s.Master.NodeName, PeerURL: s.Master.PeerURL()}
}

// InitialCluster is the survivor's one-member initial cluster.
func (s *Scene) InitialCluster() string {
	return plan.InitialCluster(plan.Member{Name: s.Master.MemberName, PeerURL: s.Master.PeerURL()})
}

func port(raw string) int {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// MustExist fails the test if a path is missing.
func MustExist(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
}

// SingleFileBackup rewrites the scene's backup in the OpenShift 4.3.0/4.3.1
// form: one snapshot_db_kuberesources_<ts>.tar.gz holding snapshot.db and
// the static-pod-resources folders, as that release's backup script wrote it.
func (s *Scene) SingleFileBackup(t testing.TB) string {
	t.Helper()
	stage := t.TempDir()
	cmds := [][]string{
		{"tar", "-xzf", s.Backup.Resources, "-C", stage},
		{"cp", s.Backup.Snapshot, filepath.Join(stage, "snapshot.db")},
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	entries, err := os.ReadDir(stage)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-cpzf", filepath.Join(s.BackupDir, "snapshot_db_kuberesources_"+s.Backup.Timestamp+".tar.gz"), "-C", stage}
	for _, e := range entries {
		args = append(args, e.Name())
	}
	if out, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(s.BackupDir, filepath.Base(s.Backup.Snapshot)))
	os.Remove(filepath.Join(s.BackupDir, filepath.Base(s.Backup.Resources)))
	return filepath.Join(s.BackupDir, "snapshot_db_kuberesources_"+s.Backup.Timestamp+".tar.gz")
}

// Outliving wraps t so that a scene staged with it outlives the test that
// staged it (tests of a package share one staged scene and copy it): its
// temporary folders are not removed at the test's end. They are named for
// the test process (see tmpdirs), and a later test process removes them
// once this one has ended.
func Outliving(t *testing.T) testing.TB { return &outliving{T: t} }

type outliving struct{ *testing.T }

func (o *outliving) TempDir() string {
	d, err := tmpdirs.Make("etcd-rescue-scene-")
	if err != nil {
		o.Fatal(err)
	}
	return d
}

func (o *outliving) Cleanup(func()) {}

package restore

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// TestInPlaceWritesWhatEtcdutlRestoreWrites restores one snapshot twice,
// with etcdutl's snapshot restore and with the staged copy's in-place
// edits, and compares the data dirs: every key of every bucket of the db,
// and the WAL and raft snapshot files byte for byte.
func TestInPlaceWritesWhatEtcdutlRestoreWrites(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 3000, Lost: 10})
	member := plan.Member{Name: "master-0", PeerURL: "https://10.0.0.7:2380"}
	for _, bump := range []int64{0, 1_000_000} {
		t.Run(fmt.Sprintf("bump %d", bump), func(t *testing.T) {
			want := filepath.Join(t.TempDir(), "etcdutl")
			err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
				SnapshotPath:        s.Backup.Snapshot,
				Name:                member.Name,
				OutputDataDir:       want,
				PeerURLs:            []string{member.PeerURL},
				InitialCluster:      plan.InitialCluster(member),
				InitialClusterToken: "token-1",
				RevisionBump:        uint64(bump),
				MarkCompacted:       bump > 0,
			})
			if err != nil {
				t.Fatal(err)
			}
			got := filepath.Join(t.TempDir(), "staged")
			if err := os.MkdirAll(filepath.Dir(stagedDB(got)), 0o700); err != nil {
				t.Fatal(err)
			}
			info, err := backup.StageSnapshot(context.Background(), s.Backup.Snapshot, stagedDB(got), false, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = inPlace{
				DataDir: got, Name: member.Name, PeerURL: member.PeerURL,
				InitialCluster: plan.InitialCluster(member), InitialClusterToken: "token-1",
				LatestRevision: info.Check.MaxRevision, RevisionBump: bump,
			}.run(zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			if a, b := dumpDB(t, stagedDB(want)), dumpDB(t, stagedDB(got)); a != b {
				t.Errorf("the db differs from etcdutl's:\n%s", firstDiff(a, b))
			}
			if a, b := otherFiles(t, want), otherFiles(t, got); a != b {
				t.Errorf("the WAL and snap files differ from etcdutl's:\n%s", firstDiff(a, b))
			}
		})
	}
}

func TestInPlaceRefusesAMemberOutsideTheCluster(t *testing.T) {
	dir := t.TempDir()
	err := inPlace{DataDir: dir, Name: "a", PeerURL: "https://10.0.0.1:2380", InitialCluster: "b=https://10.0.0.1:2380"}.run(zap.NewNop())
	if err == nil {
		t.Fatal("a member missing from the initial cluster was accepted")
	}
}

// dumpDB lists every bucket, key and value of a bbolt file, once bbolt's
// own check passes on it.
func dumpDB(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt's Tx.Check: %w", err)
		}
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			return bk.ForEach(func(k, v []byte) error {
				fmt.Fprintf(&b, "%s %x %x\n", name, k, v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// otherFiles lists every file of a data dir but the db, with its contents.
func otherFiles(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "db" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%s %d %x\n", rel, len(data), data[:min(len(data), 4096)])
		if !bytes.Equal(data[min(len(data), 4096):], make([]byte, len(data)-min(len(data), 4096))) {
			fmt.Fprintf(&b, "%s tail %x\n", rel, data[4096:])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\netcdutl:  %.300s\nin place: %.300s", i, al[i], bl[i])
		}
	}
	return fmt.Sprintf("etcdutl has %d lines, in place %d", len(al), len(bl))
}

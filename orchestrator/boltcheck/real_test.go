package boltcheck

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
)

// realFiles are a snapshot (with its sha256 trailer) and a backend db file
// written by a real etcd: 3,000 keys, 500 deleted (tombstones), three
// 100 KiB values (overflow pages), a compaction (free pages).
var realFiles struct {
	once              sync.Once
	snapshot, backend string
	revision          int64
	err               string
}

func realEtcdFiles(t *testing.T) (snapshotPath, backendPath string, revision int64) {
	t.Helper()
	realFiles.once.Do(func() {
		dir, err := os.MkdirTemp("", "boltcheck-etcd-")
		if err != nil {
			realFiles.err = err.Error()
			return
		}
		sharedDirs = append(sharedDirs, dir)
		ok := t.Run("write real etcd files", func(t *testing.T) { writeRealFiles(t, dir) })
		if !ok {
			realFiles.err = "a real etcd could not write its files"
		}
	})
	if realFiles.err != "" {
		t.Fatal(realFiles.err)
	}
	return realFiles.snapshot, realFiles.backend, realFiles.revision
}

func writeRealFiles(t *testing.T, dir string) {
	c := etcdtest.StartCluster(t, 1)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	etcdtest.PutKeys(t, cli, 0, 3000)
	from, _ := etcdtest.Key(1000)
	to, _ := etcdtest.Key(1500)
	if _, err := cli.Delete(ctx, from, clientv3.WithRange(to)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := cli.Put(ctx, "/registry/big/"+string(rune('a'+i)), strings.Repeat("b", 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(ctx, "/registry/big/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision-1000, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	etcdtest.PutKeys(t, cli, 3000, 3100)
	st, err := cli.Status(ctx, c.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	realFiles.revision = st.Header.Revision
	realFiles.snapshot = filepath.Join(dir, "snapshot.db")
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), etcdtest.ClientConfig(t, c.PKI, c.Endpoints()...), realFiles.snapshot); err != nil {
		t.Fatal(err)
	}
	m := c.Members[0]
	m.Stop()
	realFiles.backend = filepath.Join(dir, "backend.db")
	copyFile(t, filepath.Join(m.Spec.DataDir, "member", "snap", "db"), realFiles.backend)
}

// TestRealEtcdFiles checks a real etcd's snapshot and backend: both
// checkers accept them, and the report matches what bbolt reads.
func TestRealEtcdFiles(t *testing.T) {
	snap, backend, rev := realEtcdFiles(t)
	for name, p := range map[string]string{"snapshot": snap, "backend": backend} {
		t.Run(name, func(t *testing.T) {
			var progress []Progress
			rep, err := Check(context.Background(), p, Options{Progress: func(pr Progress) { progress = append(progress, pr) }})
			if err != nil {
				t.Fatal(err)
			}
			if ok, detail := txCheck(t, p); !ok {
				t.Fatalf("bbolt rejects a real etcd's file: %s", detail)
			}
			want := countWithBbolt(t, p)
			if rep.Keys != want.keys || rep.Tombstones != want.tombstones || rep.MinRevision != want.minRev || rep.MaxRevision != want.maxRev || rep.Entries != want.entries {
				t.Errorf("report %+v, but bbolt reads %+v", rep, want)
			}
			if rep.MaxRevision != rev {
				t.Errorf("last revision %d, but etcd said %d", rep.MaxRevision, rev)
			}
			if rep.FreePages == 0 || rep.OverflowPages == 0 || rep.Tombstones == 0 {
				t.Errorf("report %+v: want free pages (compaction), overflow pages (100 KiB values) and tombstones (deletes)", rep)
			}
			if used := 2 + rep.BranchPages + rep.LeafPages + rep.OverflowPages + rep.FreelistPages; used+rep.FreePages != rep.Pages {
				t.Errorf("report %+v: pages do not add up (%d used + %d free != %d)", rep, used, rep.FreePages, rep.Pages)
			}
			last := progress[len(progress)-1]
			if last.Pages != rep.Pages || last.Bytes != last.BytesTotal || last.BytesTotal != int64(rep.Pages)*int64(rep.PageSize) {
				t.Errorf("last progress %+v, want all of the report's %d pages", last, rep.Pages)
			}
			t.Logf("%s: %+v", name, rep)
		})
	}
}

type bboltCount struct {
	keys, tombstones, entries uint64
	minRev, maxRev            int64
}

// countWithBbolt reads a healthy file with bbolt: revisions in "key",
// key/value pairs in every bucket.
func countWithBbolt(t *testing.T, path string) bboltCount {
	t.Helper()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n bboltCount
	var walk func(b *bolt.Bucket, isKey bool) error
	walk = func(b *bolt.Bucket, isKey bool) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(b.Bucket(k), false)
			}
			n.entries++
			if isKey {
				main := int64(beUint64(k))
				if n.keys == 0 {
					n.minRev = main
				}
				n.maxRev = main
				n.keys++
				if len(k) == 18 {
					n.tombstones++
				}
			}
			return nil
		})
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(b, string(name) == "key") })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

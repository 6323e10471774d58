package backup

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// TestVerifyStatusMatchesEtcdutlLargeFile: on a file whose entries the
// structure check hands to the status sum in many batches (about 40 MiB:
// Kubernetes-shaped revisions of 100 bytes to 16 KiB, updates, deletions,
// keys put again, a few values of several MiB), the figures are still
// etcdutl's.
func TestVerifyStatusMatchesEtcdutlLargeFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "large.db")
	writeLargeBackend(t, db, 40<<20)

	want, err := snapshot.NewV3(zap.NewNop()).Status(db)
	if err != nil {
		t.Fatal(err)
	}
	info, err := VerifySnapshot(context.Background(), db, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != want {
		t.Errorf("status = %+v, etcdutl says %+v", info.Status, want)
	}
	if want.TotalSize < 40<<20 || want.TotalKey < 1000 || want.Version == "" || info.Check.Tombstones == 0 || info.Check.OverflowPages == 0 {
		t.Errorf("etcdutl says %+v, the check %+v: the file is not the one this test means to write", want, info.Check)
	}
}

// writeLargeBackend writes an etcd-shaped backend of about size bytes
// straight with bbolt.
func writeLargeBackend(t *testing.T, path string, size int64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"key", "meta", "lease", "alarm", "auth", "authUsers", "authRoles", "members", "members_removed", "cluster"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte("meta"))
		if err := meta.Put([]byte("storageVersion"), []byte("3.6.0")); err != nil {
			return err
		}
		return meta.Put([]byte("consistent_index"), binary.BigEndian.AppendUint64(nil, 42))
	}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	payload := make([]byte, 5<<20)
	rng.Read(payload)
	var keys []string
	var rev, written int64
	for written < size {
		if err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("key"))
			b.FillPercent = 1 // revisions only ever append
			for range 2000 {
				rev++
				key, tomb := "", false
				switch r := rng.Intn(10); {
				case len(keys) > 0 && r < 3:
					key = keys[rng.Intn(len(keys))]
				case len(keys) > 0 && r == 3:
					key, tomb = keys[rng.Intn(len(keys))], true
				default:
					key = fmt.Sprintf("/registry/pods/ns-%d/pod-%d", rng.Intn(50), len(keys))
					keys = append(keys, key)
				}
				n := 100 + rng.Intn(16<<10)
				if rev%5000 == 0 {
					n = 1<<20 + rng.Intn(4<<20)
				}
				kv := &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev}
				if !tomb {
					kv.Value, kv.CreateRevision, kv.Version = payload[:n], rev, 1
				}
				v, err := proto.Marshal(kv)
				if err != nil {
					return err
				}
				k := binary.BigEndian.AppendUint64(nil, uint64(rev))
				k = binary.BigEndian.AppendUint64(append(k, '_'), 0)
				if tomb {
					k = append(k, 't')
				}
				if err := b.Put(k, v); err != nil {
					return err
				}
				written += int64(len(k) + len(v))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

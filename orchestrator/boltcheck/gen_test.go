package boltcheck

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// shape says what an etcd-shaped bbolt file written by bbolt holds.
type shape struct {
	pageSize int
	// revisions are put in the key bucket, one per main revision; every
	// tombstoneEvery-th is a deletion.
	revisions, tombstoneEvery int
	valueSize                 int
	// deleteFrom..revisions are deleted again in a later transaction, so
	// the file has free pages.
	deleteFrom int
	// bigValues are values of 3 pages, so leaves with overflow pages.
	bigValues int
	// nested adds a bucket holding a non-inline sub-bucket.
	nested         bool
	noFreelistSync bool
}

// revKey is etcd's revision key for main revision main, sub 0.
func revKey(main int64, tombstone bool) []byte {
	k := make([]byte, 17, 18)
	binary.BigEndian.PutUint64(k, uint64(main))
	k[8] = '_'
	if tombstone {
		k = append(k, 't')
	}
	return k
}

// kvValue is what etcd stores for a revision: an mvccpb.KeyValue.
func kvValue(main int64, size int) []byte {
	b, err := proto.Marshal(&mvccpb.KeyValue{
		Key:            []byte(fmt.Sprintf("/registry/test/key-%09d", main)),
		CreateRevision: main, ModRevision: main, Version: 1,
		Value: []byte(strings.Repeat("v", size)),
	})
	if err != nil {
		panic(err)
	}
	return b
}

// writeShape writes an etcd-shaped bbolt file at path: the buckets etcd
// creates (most of them small, so inline), revisions in "key".
func writeShape(t testing.TB, path string, s shape) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: s.pageSize, NoFreelistSync: s.noFreelistSync, NoSync: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"key", "meta", "lease", "alarm", "auth", "authUsers", "authRoles", "members", "members_removed", "cluster"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte("meta"))
		if err := meta.Put([]byte("consistent_index"), binary.BigEndian.AppendUint64(nil, 42)); err != nil {
			return err
		}
		if err := meta.Put([]byte("term"), binary.BigEndian.AppendUint64(nil, 2)); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("members")).Put([]byte("8e9e05c52164694d"), []byte(`{"id":10276657743932975437,"peerURLs":["https://127.0.0.1:2380"]}`)); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("cluster")).Put([]byte("clusterVersion"), []byte("3.7.0")); err != nil {
			return err
		}
		if s.nested {
			outer, err := tx.CreateBucket([]byte("nested"))
			if err != nil {
				return err
			}
			inner, err := outer.CreateBucket([]byte("inner"))
			if err != nil {
				return err
			}
			for i := 0; i < 20; i++ {
				if err := inner.Put([]byte(fmt.Sprintf("k%03d", i)), []byte(strings.Repeat("n", 60))); err != nil {
					return err
				}
			}
		}
		return nil
	}))
	const batch = 5000
	for from := 1; from <= s.revisions; from += batch {
		must(db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("key"))
			b.FillPercent = 0.9 // what etcd uses for its sequential keys
			for i := from; i < from+batch && i <= s.revisions; i++ {
				size := s.valueSize
				if i <= s.bigValues {
					size = 3 * s.pageSize
				}
				tomb := s.tombstoneEvery > 0 && i%s.tombstoneEvery == 0
				if err := b.Put(revKey(int64(i)+1, tomb), kvValue(int64(i)+1, size)); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	if s.deleteFrom > 0 {
		must(db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("key"))
			c := b.Cursor()
			for k, _ := c.Seek(revKey(int64(s.deleteFrom)+1, false)); k != nil; k, _ = c.Next() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

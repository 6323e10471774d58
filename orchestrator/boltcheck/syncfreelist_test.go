package boltcheck

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestSyncFreelistIsWhatBboltRebuilds writes files without a free list,
// as etcd does, syncs one copy's list with SyncFreelist and leaves the
// other to bbolt's rebuild: bbolt must load the same free pages from both,
// and the same writes on both must leave files that bbolt's Tx.Check and
// boltcheck pass, holding the same keys.
func TestSyncFreelistIsWhatBboltRebuilds(t *testing.T) {
	for _, s := range []shape{
		{pageSize: 4096, revisions: 3000, tombstoneEvery: 10, valueSize: 200, deleteFrom: 2000, bigValues: 3, noFreelistSync: true},
		{pageSize: 4096, revisions: 20000, valueSize: 100, deleteFrom: 10, nested: true, noFreelistSync: true},
		{pageSize: 1024, revisions: 500, valueSize: 50, noFreelistSync: true},
	} {
		t.Run(fmt.Sprintf("%d revisions, deleted from %d", s.revisions, s.deleteFrom), func(t *testing.T) {
			dir := t.TempDir()
			rebuilt, synced := filepath.Join(dir, "rebuilt.db"), filepath.Join(dir, "synced.db")
			writeShape(t, rebuilt, s)
			b, err := os.ReadFile(rebuilt)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(synced, b, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := Check(context.Background(), synced, Options{ListUnreachable: true})
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(r.Unreachable)) != r.FreePages {
				t.Fatalf("%d unreachable pages listed, %d counted", len(r.Unreachable), r.FreePages)
			}
			if err := SyncFreelist(synced, r); err != nil {
				t.Fatal(err)
			}
			if got, want := freeIDs(t, synced), freeIDs(t, rebuilt); got != want {
				t.Fatalf("bbolt loads free pages %s from the synced list, rebuilds %s", got, want)
			}
			for _, p := range []string{rebuilt, synced} {
				churn(t, p)
				if _, err := Check(context.Background(), p, Options{}); err != nil {
					t.Fatalf("%s after writes: %v", filepath.Base(p), err)
				}
			}
			if a, b := keysOf(t, rebuilt), keysOf(t, synced); a != b {
				t.Fatal("the same writes left different keys")
			}
		})
	}
}

func TestSyncFreelistRefusesAChangedFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db")
	writeShape(t, p, shape{pageSize: 4096, revisions: 500, valueSize: 100, deleteFrom: 400, noFreelistSync: true})
	r, err := Check(context.Background(), p, Options{ListUnreachable: true})
	if err != nil {
		t.Fatal(err)
	}
	churn(t, p) // a new transaction: the meta page checked is not the newest
	if err := SyncFreelist(p, r); err == nil {
		t.Fatal("a file changed since its check was accepted")
	}
}

func openBolt(t *testing.T, p string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(p, 0o600, &bolt.Options{NoFreelistSync: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// freeIDs is the free list bbolt holds after opening p for writing.
func freeIDs(t *testing.T, p string) string {
	t.Helper()
	db := openBolt(t, p)
	defer db.Close()
	st := db.Stats()
	return fmt.Sprintf("%d free, %d pending", st.FreePageN, st.PendingPageN)
}

// churn writes, overwrites and deletes keys in a few transactions, then
// runs bbolt's Tx.Check.
func churn(t *testing.T, p string) {
	t.Helper()
	db := openBolt(t, p)
	defer db.Close()
	for round := 0; round < 3; round++ {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("key"))
			for i := 0; i < 400; i++ {
				if err := b.Put(revKey(int64(1_000_000+round*400+i), false), kvValue(int64(i), 300)); err != nil {
					return err
				}
			}
			c := b.Cursor()
			n := 0
			for k, _ := c.First(); k != nil && n < 200; k, _ = c.Next() {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("bbolt's Tx.Check: %v", err)
	}
}

func keysOf(t *testing.T, p string) string {
	t.Helper()
	db := openBolt(t, p)
	defer db.Close()
	n, sum := 0, uint64(0)
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("key")).ForEach(func(k, v []byte) error {
			n++
			for _, c := range k {
				sum = sum*31 + uint64(c)
			}
			sum += uint64(len(v))
			return nil
		})
	})
	return fmt.Sprintf("%d keys, %x", n, sum)
}

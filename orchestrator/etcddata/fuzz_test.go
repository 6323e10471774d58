package etcddata

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzRead: any file is read or refused with an error naming it, never a
// panic or a fault. The seeds are small bbolt files made here.
func FuzzRead(f *testing.F) {
	dir := f.TempDir()
	for i, buckets := range [][]string{nil, {"key"}, {"key", "members", "meta", "cluster"}} {
		p := filepath.Join(dir, "seed"+string(rune('0'+i)))
		db, err := bolt.Open(p, 0o600, nil)
		if err != nil {
			f.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			for _, b := range buckets {
				bk, _ := tx.CreateBucket([]byte(b))
				if b == "key" {
					bk.Put([]byte("\x00\x00\x00\x00\x00\x00\x00\x07_\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("v"))
				}
				if b == "members" {
					bk.Put([]byte("1"), []byte(`{"id":1,"name":"m0","peerURLs":["https://10.0.0.1:2380"]}`))
				}
			}
			return nil
		})
		db.Close()
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Read(p)
		if err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrNotEtcd) && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error of no known kind: %v", err)
		}
	})
}

package survey

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestTruncatedBackendIsAnError: a backend cut short (a disk that lost its
// tail) has pages bbolt maps past the end of the file. Reading them faults
// rather than panics; the survey must turn that into an error naming the
// file, whatever the cut, and never crash.
func TestTruncatedBackendIsAnError(t *testing.T) {
	src := filepath.Join(t.TempDir(), "db")
	db, err := bolt.Open(src, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		keys, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		for rev := uint64(1); rev <= 2000; rev++ {
			k := make([]byte, 17)
			binary.BigEndian.PutUint64(k, rev)
			k[8] = '_'
			if err := keys.Put(k, []byte(strings.Repeat("v", 200))); err != nil {
				return err
			}
		}
		_, err = tx.CreateBucket([]byte("meta"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	whole, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := readBackend(src); err != nil || b.Revision != 2000 {
		t.Fatalf("whole backend: %+v, %v", b, err)
	}
	for _, size := range []int{8192, 12288, 16384, len(whole) / 2} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "db")
			if err := os.WriteFile(p, whole[:size], 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := readBackend(p)
			if err == nil {
				t.Fatalf("a backend cut to %d of %d bytes read as %+v", size, len(whole), b)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("the error does not name the file: %v", err)
			}
		})
	}
}

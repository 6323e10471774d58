package etcddata

import (
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
)

// realBackend runs a real etcd, writes keys, stops it and returns a copy
// of its backend file.
func realBackend(t *testing.T) (db []byte, name string) {
	t.Helper()
	p := etcdtest.NewPKI(t)
	dir := filepath.Join(t.TempDir(), "data")
	peer, client := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
	name = "etcd-member-master-0"
	m := p.Start(t, etcdtest.MemberSpec{Name: name, DataDir: dir, PeerURL: peer, ClientURL: client, InitialCluster: name + "=" + peer})
	cli := p.Client(t, client)
	etcdtest.PutKeys(t, cli, 0, 200)
	cli.Close()
	m.Stop()
	b, err := os.ReadFile(DBPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	// The file is grown ahead of use; only the pages up to the high-water
	// mark hold data, and damage must land there to mean anything.
	bdb, err := bolt.Open(DBPath(dir), 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	bdb.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	bdb.Close()
	return b[:used], name
}

func write(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantError reads path and wants an error wrapping want that names path.
func wantError(t *testing.T, path string, want error) {
	t.Helper()
	info, err := Read(path)
	if err == nil {
		t.Fatalf("Read(%s) = %+v, want an error", path, info)
	}
	if !errors.Is(err, want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Read(%s): err = %v, want %v naming the file", path, err, want)
	}
}

func TestReadRealBackend(t *testing.T) {
	db, name := realBackend(t)
	info, err := Read(write(t, db))
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision < 200 || len(info.Members) != 1 || info.Members[0].Name != name || info.WrittenBy() == "" {
		t.Fatalf("info = %+v", info)
	}

	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{len(db) - 4096, len(db) / 2, 3 * 4096, 2 * 4096, 4096, 100, 1} {
			wantError(t, write(t, db[:n]), ErrDamaged)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		wantError(t, write(t, nil), ErrDamaged)
	})
	t.Run("zeroed meta pages", func(t *testing.T) {
		b := append([]byte(nil), db...)
		clear(b[:2*4096])
		wantError(t, write(t, b), ErrDamaged)
	})
	// Random damage anywhere in the file: each read ends with an answer
	// or an error naming the file, never a panic or a fault.
	t.Run("flipped bytes", func(t *testing.T) {
		rng := rand.New(rand.NewSource(14))
		errs := 0
		for i := 0; i < 300; i++ {
			b := append([]byte(nil), db...)
			off := rng.Intn(len(b))
			n := 1 + rng.Intn(256)
			for j := off; j < off+n && j < len(b); j++ {
				b[j] ^= byte(1 + rng.Intn(255))
			}
			path := write(t, b)
			if _, err := Read(path); err != nil {
				errs++
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error does not name %s: %v", path, err)
				}
			}
		}
		t.Logf("%d of 300 damaged copies refused", errs)
		if errs == 0 {
			t.Error("no damaged copy was refused: the damage test damages nothing")
		}
	})
}

func TestReadNotEtcd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Read(path)
	if !errors.Is(err, ErrNotEtcd) || err.Error() != "not an etcd data dir: no key bucket in "+path {
		t.Fatalf("err = %v", err)
	}

	wantError(t, t.TempDir(), ErrNotEtcd)
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestReadDamagedMemberRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("key")); err != nil {
			return err
		}
		m, err := tx.CreateBucket([]byte("members"))
		if err != nil {
			return err
		}
		return m.Put([]byte("1"), []byte("{not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	wantError(t, path, ErrDamaged)
}

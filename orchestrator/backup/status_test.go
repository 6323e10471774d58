package backup

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
)

// TestVerifyStatusMatchesEtcdutl: the figures VerifySnapshot computes in
// the structure check's walk are the ones etcdutl's snapshot status
// prints, on a real etcd's backend with overwrites, deletions, a key put
// again after its deletion and values on overflow pages.
func TestVerifyStatusMatchesEtcdutl(t *testing.T) {
	p := etcdtest.NewPKI(t)
	dir := filepath.Join(t.TempDir(), "data")
	peer, client := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
	m := p.Start(t, etcdtest.MemberSpec{Name: "m0", DataDir: dir, PeerURL: peer, ClientURL: client, InitialCluster: "m0=" + peer})
	cli := p.Client(t, client)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	etcdtest.PutKeys(t, cli, 0, 400)
	etcdtest.PutKeys(t, cli, 100, 200)
	from, _ := etcdtest.Key(50)
	to, _ := etcdtest.Key(80)
	if _, err := cli.Delete(ctx, from, clientv3.WithRange(to)); err != nil {
		t.Fatal(err)
	}
	etcdtest.PutKeys(t, cli, 60, 65)
	for i := 0; i < 3; i++ {
		if _, err := cli.Put(ctx, "/large/"+string(rune('a'+i)), strings.Repeat("v", 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	cli.Close()
	m.Stop()
	db := filepath.Join(dir, "member/snap/db")

	want, err := snapshot.NewV3(zap.NewNop()).Status(db)
	if err != nil {
		t.Fatal(err)
	}
	var last, total int64
	info, err := VerifySnapshot(context.Background(), db, true, func(done, all int64) { last, total = done, all })
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != want {
		t.Errorf("status = %+v, etcdutl says %+v", info.Status, want)
	}
	if want.TotalKey != 400-30+5+3 || info.Check.OverflowPages == 0 {
		t.Errorf("etcdutl counts %d live keys, %d overflow pages: the file is not the one this test means to write", want.TotalKey, info.Check.OverflowPages)
	}
	if size := info.Size; total != size || last != size {
		t.Errorf("progress ended at %d of %d, want %d of %d", last, total, size, size)
	}

	// With etcd's trailer, the hash and the structure check run side by
	// side; progress counts both reads, from one goroutine at a time.
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	snap := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(snap, append(b, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	var calls []int64
	info, err = VerifySnapshot(context.Background(), snap, false, func(done, all int64) { calls = append(calls, done); total = all })
	if err != nil {
		t.Fatal(err)
	}
	if !info.HasHash || info.Status != want {
		t.Errorf("with a trailer: status = %+v (trailer %v), etcdutl says %+v", info.Status, info.HasHash, want)
	}
	if size := info.Size; total != 2*size || calls[len(calls)-1] != 2*size {
		t.Errorf("progress ended at %d of %d, want %d of %d", calls[len(calls)-1], total, 2*size, 2*size)
	}
}

// TestVerifyIgnoresAnotherProcessLock: bbolt waits without end for a file
// another process holds locked; the check reads it with pread and refuses
// a damaged one promptly instead of hanging the restore.
func TestVerifyIgnoresAnotherProcessLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	start := time.Now()
	_, err = VerifySnapshot(context.Background(), p, true, nil)
	if err == nil || !strings.Contains(err.Error(), "fails etcd's integrity check") {
		t.Fatalf("err = %v, want the integrity check to refuse it", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

// TestVerifyStopsWithContext: a cancelled context stops the check with an
// error that does not call the backup damaged.
func TestVerifyStopsWithContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(p, dbFile(t), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := VerifySnapshot(ctx, p, true, nil)
	if err == nil || !strings.Contains(err.Error(), "context canceled") || strings.Contains(err.Error(), "integrity") {
		t.Fatalf("err = %v, want it stopped by the context", err)
	}
}

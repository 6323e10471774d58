package backup

import (
	"context"
	"crypto/sha256"
	"hash"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
)

// TestDownloadSnapshotProgress: the snapshot streamed from a real etcd is
// written whole with its checked trailer, and progress runs from the first
// bytes to the file's size, against the member's backend size.
func TestDownloadSnapshotProgress(t *testing.T) {
	p := etcdtest.NewPKI(t)
	peer, client := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
	m := p.Start(t, etcdtest.MemberSpec{Name: "m0", DataDir: filepath.Join(t.TempDir(), "data"), PeerURL: peer, ClientURL: client, InitialCluster: "m0=" + peer})
	defer m.Stop()
	cli := p.Client(t, client)
	etcdtest.PutKeys(t, cli, 0, 2000)
	cli.Close()

	out := filepath.Join(t.TempDir(), "snapshot.db")
	var calls, last, total int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := downloadSnapshot(ctx, etcdtest.ClientConfig(t, p, client), out, func(done, all int64) { calls, last, total = calls+1, done, all }); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if last != st.Size() || total < st.Size() || calls < 2 {
		t.Errorf("progress: %d calls, last %d of %d; the file has %d bytes", calls, last, total, st.Size())
	}
	if _, err := VerifySnapshot(ctx, out, false, nil); err != nil {
		t.Errorf("the downloaded snapshot does not verify: %v", err)
	}
}

// TestTrailerWriter: the last 32 bytes are held back from the hash, however
// the writes are cut.
func TestTrailerWriter(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, cut := range []int{1, 5, 31, 32, 33, 500, 1000} {
		tw := &trailerWriter{h: newSHA()}
		for i := 0; i < len(data); i += cut {
			tw.Write(data[i:min(i+cut, len(data))])
		}
		want := newSHA()
		want.Write(data[:len(data)-32])
		if string(tw.sum()) != string(want.Sum(nil)) || string(tw.tail) != string(data[len(data)-32:]) {
			t.Errorf("writes of %d bytes: hash or trailer wrong", cut)
		}
	}
}

func newSHA() hash.Hash { return sha256.New() }

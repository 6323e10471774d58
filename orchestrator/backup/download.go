package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
)

// downloadSnapshot streams a snapshot from the one endpoint of cfg into
// path, as etcd's snapshot.SaveWithVersion does, and also reports progress
// (the member's backend size is the total) and checks the sha256 trailer
// while the bytes pass, so a snapshot damaged on the way is never kept.
// The file takes its name only once whole and fsynced.
func downloadSnapshot(ctx context.Context, cfg clientv3.Config, path string, progress Progress) error {
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	var total int64
	if st, err := cli.Status(ctx, cfg.Endpoints[0]); err == nil {
		total = st.DbSize + sha256.Size
	}
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		return err
	}
	defer resp.Snapshot.Close()
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return err
	}
	defer f.Abort()
	tw := &trailerWriter{h: sha256.New()}
	var done int64
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Snapshot.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			tw.Write(buf[:n])
			done += int64(n)
			if progress != nil {
				progress(done, max(total, done))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("could not read the snapshot stream: %w", rerr)
		}
	}
	if !hasTrailer(done) {
		return fmt.Errorf("the snapshot stream ended after %d bytes, not 512·n+32: it lacks etcd's sha256 trailer", done)
	}
	if got, want := tw.sum(), tw.tail; !bytes.Equal(got, want) {
		return fmt.Errorf("the snapshot's sha256 is %x but its trailer says %x: it was damaged on the way", got[:8], want[:8])
	}
	return f.Commit()
}

// trailerWriter hashes all it is given but its last sha256.Size bytes,
// which it keeps: the trailer.
type trailerWriter struct {
	h    hash.Hash
	tail []byte
}

func (t *trailerWriter) Write(p []byte) {
	t.tail = append(t.tail, p...)
	if n := len(t.tail) - sha256.Size; n > 0 {
		t.h.Write(t.tail[:n])
		t.tail = append(t.tail[:0], t.tail[n:]...)
	}
}

func (t *trailerWriter) sum() []byte { return t.h.Sum(nil) }

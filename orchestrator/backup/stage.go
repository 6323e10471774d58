package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/boltcheck"
)

// ErrStaging marks a StageSnapshot error in writing the staged copy (no
// space, a folder that cannot be written): it says nothing against the
// snapshot itself.
var ErrStaging = errors.New("the staged copy cannot be written")

// StageSnapshot is the one read of a snapshot a restore needs: it copies
// src to dst (a file in the restore's staging folder) while hashing it and
// checks the sha256 trailer at the end (unless src has none and
// skipHashCheck), leaving dst without the trailer, as the db file etcd
// opens; then it checks dst's structure and etcd's schema while dst is
// still in the page cache, and computes etcdutl's status figures; last it
// writes into dst the free list bbolt would rebuild (boltcheck.SyncFreelist),
// so that opening it for etcd's restore edits does not walk every page. The
// refusals and their messages are VerifySnapshot's. dst is not fsynced (the
// caller fsyncs once, after its edits); on any error it is removed.
// Progress counts the copy and the check: total is twice src's size.
func StageSnapshot(ctx context.Context, src, dst string, skipHashCheck bool, progress Progress) (info *SnapshotInfo, err error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	info = &SnapshotInfo{Path: src, Size: st.Size()}
	if info.HasHash, err = trailerRule(src, st.Size(), skipHashCheck); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if rerr := os.Remove(dst); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = fmt.Errorf("%w (and removing the staged copy %s failed: %v)", err, dst, rerr)
			}
		}
	}()
	meter := &bothMeter{progress: progress, total: 2 * st.Size()}
	if err := copyHashed(ctx, src, dst, st.Size(), info.HasHash, func(n int64) { meter.set(0, n) }); err != nil {
		return nil, err
	}
	size := st.Size()
	if info.HasHash {
		size -= sha256.Size
	}
	sum := newStatusSum()
	rep, err := boltcheck.Check(ctx, dst, boltcheck.Options{
		Values:          sum.add,
		Progress:        func(p boltcheck.Progress) { meter.set(1, min(p.Bytes, size)) },
		ListUnreachable: true,
	})
	if err != nil {
		if _, damaged := boltcheck.KindOf(err); damaged {
			return nil, fmt.Errorf("snapshot %s fails etcd's integrity check: %w; use another backup", src, err)
		}
		return nil, fmt.Errorf("snapshot %s: %w", src, err)
	}
	// etcd writes no free list: without one, every read-write open of the
	// copy (the restore's edits) would rebuild it by walking every page.
	if err := boltcheck.SyncFreelist(dst, rep); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStaging, err)
	}
	rep.Unreachable = nil
	meter.finish()
	info.Check = rep
	info.Status = sum.status(rep)
	return info, nil
}

// trailerRule says whether a snapshot of size bytes has etcd's sha256
// trailer, and refuses an empty one, or one without the trailer unless
// skipHashCheck.
func trailerRule(path string, size int64, skipHashCheck bool) (bool, error) {
	switch {
	case size == 0:
		return false, fmt.Errorf("snapshot %s is empty: the backup was not written; take a new one or use another", path)
	case hasTrailer(size):
		return true, nil
	case !skipHashCheck:
		return false, fmt.Errorf("snapshot %s has no sha256 trailer (size %d is not 512·n+32): it is truncated, damaged, or a copy of a data dir's db file. "+
			"If it is a db file copied from a data dir, pass --skip-hash-check", path, size)
	}
	return false, nil
}

// copyHashed copies src (size bytes) to dst; with a trailer, it copies all
// but the trailer, hashing it, and compares the hash with the trailer.
func copyHashed(ctx context.Context, src, dst string, size int64, trailer bool, progress func(int64)) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("stage snapshot: %w: %w", ErrStaging, err)
	}
	defer out.Close()
	body := size
	if trailer {
		body -= sha256.Size
	}
	h := sha256.New()
	var done int64
	wrote := make(chan error, 1)
	if err := readChunks(ctx, in, body, func(b []byte) error {
		// The write (a copy into the page cache) and the hash of the same
		// chunk run side by side on two cores; b is reused only after both.
		go func() {
			_, err := out.Write(b)
			wrote <- err
		}()
		if trailer {
			h.Write(b)
		}
		if err := <-wrote; err != nil {
			return fmt.Errorf("stage snapshot %s: %w: %w", dst, ErrStaging, err)
		}
		done += int64(len(b))
		progress(done)
		return nil
	}); err != nil {
		return fmt.Errorf("snapshot %s: copy: %w", src, err)
	}
	if trailer {
		want := make([]byte, sha256.Size)
		if _, err := io.ReadFull(in, want); err != nil {
			return fmt.Errorf("read snapshot trailer %s: %w", src, err)
		}
		if got := h.Sum(nil); !bytes.Equal(got, want) {
			return fmt.Errorf("snapshot %s is damaged: its sha256 is %x but its trailer says %x; use another backup", src, got[:8], want[:8])
		}
		progress(size)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("stage snapshot %s: %w: %w", dst, ErrStaging, err)
	}
	return nil
}

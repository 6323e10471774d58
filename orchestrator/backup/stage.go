package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

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
	defer removeStaged(dst, &err)
	meter := &bothMeter{progress: progress, total: 2 * st.Size()}
	if err := copyHashed(ctx, src, dst, st.Size(), info.HasHash, func(n int64) { meter.set(0, n) }); err != nil {
		return nil, err
	}
	if err := checkStaged(ctx, dst, info, meter); err != nil {
		return nil, err
	}
	return info, nil
}

// removeStaged removes the staged copy dst when *err is set.
func removeStaged(dst string, err *error) {
	if *err == nil {
		return
	}
	if rerr := os.Remove(dst); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		*err = fmt.Errorf("%w (and removing the staged copy %s failed: %v)", *err, dst, rerr)
	}
}

// checkStaged is staging's part after the copy to dst of the snapshot
// info describes: the structure check while dst is in the page cache
// (progress: meter's second part), the status figures, and the free list
// synced into dst. It fills info's Check and Status.
func checkStaged(ctx context.Context, dst string, info *SnapshotInfo, meter *bothMeter) error {
	defer startWriteback(dst)()
	size := info.Size
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
			return fmt.Errorf("snapshot %s fails etcd's integrity check: %w; use another backup", info.Path, err)
		}
		return fmt.Errorf("snapshot %s: %w", info.Path, err)
	}
	// etcd writes no free list: without one, every read-write open of the
	// copy (the restore's edits) would rebuild it by walking every page.
	if err := boltcheck.SyncFreelist(dst, rep); err != nil {
		return fmt.Errorf("%w: %w", ErrStaging, err)
	}
	rep.Unreachable = nil
	meter.finish()
	info.Check = rep
	info.Status = sum.status(rep)
	return nil
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
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("stage snapshot: %w: %w", ErrStaging, err)
	}
	defer out.Close()
	body := size
	if trailer {
		body -= sha256.Size
	}
	h := sha256.New()
	var hashed io.Writer = h
	if !trailer {
		hashed = nil // nothing to compare the hash with
	}
	_, err = kernelCopy(ctx, in, out, body, hashed, progress)
	if errors.Is(err, errNoKernelCopy) {
		err = bufferCopy(ctx, in, out, body, hashed, progress)
	}
	if err != nil {
		if errors.Is(err, ErrStaging) {
			return fmt.Errorf("stage snapshot %s: %w", dst, err)
		}
		return fmt.Errorf("snapshot %s: copy: %w", src, err)
	}
	if trailer {
		if err := matchTrailer(src, h, in); err != nil {
			return err
		}
		progress(size)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("stage snapshot %s: %w: %w", dst, ErrStaging, err)
	}
	return nil
}

// matchTrailer reads the sha256 trailer of the snapshot name from r and
// compares it with h, the hash of what came before it.
func matchTrailer(name string, h hash.Hash, r io.Reader) error {
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, want); err != nil {
		return fmt.Errorf("read snapshot trailer %s: %w", name, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("snapshot %s is damaged: its sha256 is %x but its trailer says %x; use another backup", name, got[:8], want[:8])
	}
	return nil
}

// errNoKernelCopy says the kernel cannot copy between these two files
// (copy_file_range refused before copying anything).
var errNoKernelCopy = errors.New("no copy_file_range between these files")

// copyChunk is how much one copy_file_range call copies: small enough for
// progress and cancellation, large enough that the calls cost nothing.
const copyChunk = 32 << 20

// kernelCopy copies n bytes from in to out with copy_file_range, which
// copies inside the kernel (on this machine in under half the time of a
// read and write through a buffer); a goroutine hashes each chunk back
// from the copy, still in the page cache, while the next one is copied,
// so the hash vouches for the bytes the restore opens (h nil: no hash). It returns
// errNoKernelCopy when the file systems do not allow it (different ones,
// on most kernels).
func kernelCopy(ctx context.Context, in, out *os.File, n int64, h io.Writer, progress func(int64)) (int64, error) {
	type span struct{ off, n int64 }
	spans := make(chan span, 2)
	hashed := make(chan error, 1)
	go func() {
		buf := make([]byte, trailerBuffer)
		var err error
		for s := range spans {
			for off := s.off; h != nil && err == nil && off < s.off+s.n; {
				b := buf[:min(int64(len(buf)), s.off+s.n-off)]
				if _, err = out.ReadAt(b, off); err == nil {
					h.Write(b)
					off += int64(len(b))
				}
			}
		}
		hashed <- err
	}()
	var done int64
	var err error
	for done < n && err == nil {
		if err = ctx.Err(); err != nil {
			break
		}
		var c int
		c, err = unix.CopyFileRange(int(in.Fd()), nil, int(out.Fd()), nil, int(min(copyChunk, n-done)), 0)
		switch {
		case err != nil && done == 0 && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
			err = errNoKernelCopy
		case err != nil && isWriteError(err):
			err = fmt.Errorf("%w: %w", ErrStaging, err)
		case err == nil && c == 0:
			err = io.ErrUnexpectedEOF
		case err == nil:
			spans <- span{done, int64(c)}
			done += int64(c)
			progress(done)
		}
	}
	close(spans)
	if herr := <-hashed; err == nil && herr != nil {
		err = fmt.Errorf("%w: read the copy back: %w", ErrStaging, herr)
	}
	return done, err
}

// bufferCopy copies n bytes from in to out through a buffer, hashing them
// (h nil: not).
func bufferCopy(ctx context.Context, in io.Reader, out *os.File, n int64, h io.Writer, progress func(int64)) error {
	var done int64
	wrote := make(chan error, 1)
	return readChunks(ctx, in, n, func(b []byte) error {
		// The write (a copy into the page cache) and the hash of the same
		// chunk run side by side on two cores; b is reused only after both.
		go func() {
			_, err := out.Write(b)
			wrote <- err
		}()
		if h != nil {
			h.Write(b)
		}
		if err := <-wrote; err != nil {
			return fmt.Errorf("%w: %w", ErrStaging, err)
		}
		done += int64(len(b))
		progress(done)
		return nil
	})
}

// startWriteback asks the kernel to write the whole of path to the disk
// now, on a goroutine, and returns a func that waits for the request to be
// made. Started once the copy is done, the disk writes the copy while the
// check reads it from the page cache (the CPU's turn), so the one fsync
// after the restore's edits finds little left to write. Started while
// copying instead, the writes compete with the copy's reads: measured on
// 2 cores at 8 GiB, that took the copy from 12.5 s to 17–24 s. An error
// only loses the head start (the fsync still writes everything).
func startWriteback(path string) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if f, err := os.Open(path); err == nil {
			_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			f.Close()
		}
	}()
	return func() { <-done }
}

// isWriteError tells a failure to write the copy (no space, a read-only
// or full file system) from one to read the backup.
func isWriteError(err error) bool {
	for _, e := range []error{unix.ENOSPC, unix.EDQUOT, unix.EROFS, unix.EFBIG} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

package backup

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// StageTarball is StageSnapshot for a single-file backup: one streaming
// pass over the .tar.gz checks every entry as CheckTarball does (same
// rules, same messages; c.Single is implied), copies the snapshot entry's
// bytes into dst while hashing them, as they come out of gzip, and keeps
// the other entries (the static resources, a few megabytes) in the
// returned TarInfo's Files.
// Checking the tarball, extracting the snapshot and staging the extract
// would read the snapshot three times, minutes each for a multi-GiB backup
// on a USB stick or a network volume.
//
// The trailer rule and the checks of dst after the copy are
// StageSnapshot's. The copy is accepted only once the walk has reached
// the end of the gzip stream (its checksum, a truncation, a second
// snapshot after the first). On any error dst is removed; an error
// wrapping ErrStaging says dst could not be written. Progress counts the
// compressed bytes read, then the check of the snapshot's bytes.
func StageTarball(ctx context.Context, tarball string, c TarCheck, dst string, skipHashCheck bool, progress Progress) (ti *TarInfo, info *SnapshotInfo, err error) {
	st, err := os.Stat(tarball)
	if err != nil {
		return nil, nil, fmt.Errorf("tarball: %w", err)
	}
	defer removeStaged(dst, &err)
	meter := &bothMeter{progress: progress, total: st.Size()}
	var read int64 // compressed bytes, told by the goroutine reading them
	c.Single = true
	ti, err = checkTarball(ctx, tarball, c, tarHooks{keepFiles: true, read: func(n int64) { read += n; meter.set(0, read) }, snapshot: func(h *tar.Header, r io.Reader) error {
		info = &SnapshotInfo{Path: fmt.Sprintf("%s in %s", EntryName(h.Name), tarball), Size: h.Size}
		var err error
		if info.HasHash, err = trailerRule(info.Path, h.Size, skipHashCheck); err != nil {
			return err
		}
		body := h.Size
		if info.HasHash {
			body -= sha256.Size
		}
		meter.grow(body) // the check's part
		return copyEntry(ctx, h.Name, r, dst, body, info)
	}})
	if err != nil {
		return nil, nil, err
	}
	if err := checkStaged(ctx, dst, info, meter); err != nil {
		return nil, nil, err
	}
	return ti, info, nil
}

// copyEntry copies body bytes of a snapshot entry from r to dst, hashing
// them when info.HasHash, and then matches the trailer that follows them.
func copyEntry(ctx context.Context, entry string, r io.Reader, dst string, body int64, info *SnapshotInfo) error {
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("stage snapshot: %w: %w", ErrStaging, err)
	}
	defer out.Close()
	var h hash.Hash
	var hashed io.Writer // nil: nothing to compare the hash with
	if info.HasHash {
		h = sha256.New()
		hashed = h
	}
	// bufferCopy reads ahead: gzip inflates the next chunk on one core
	// while the last one is hashed and written on the other.
	err = bufferCopy(ctx, r, out, body, hashed, func(int64) {})
	switch {
	case errors.Is(err, ErrStaging):
		return fmt.Errorf("stage snapshot %s: %w", dst, err)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("stopped: %w", context.Cause(ctx))
	case err != nil:
		return fmt.Errorf("entry %q damaged or truncated: %w", entry, err)
	}
	if info.HasHash {
		if err := matchTrailer(info.Path, h, r); err != nil {
			return err
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("stage snapshot %s: %w: %w", dst, ErrStaging, err)
	}
	return nil
}

package backup

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// SnapshotInfo is what a verified snapshot holds.
type SnapshotInfo struct {
	Path string
	Size int64
	// HasHash is true when the file ends with the sha256 trailer etcd
	// appends to snapshots it streams; it was checked when true.
	HasHash bool
	// Status is etcdutl's snapshot status: bbolt hash, revision, keys, size.
	Status snapshot.Status
}

// hasTrailer mirrors etcd's rule: a snapshot streamed by etcd is a whole
// number of 512-byte sectors plus the 32-byte sha256 trailer.
func hasTrailer(size int64) bool { return size%512 == sha256.Size }

// VerifySnapshot checks a snapshot file: its sha256 trailer (unless
// skipHashCheck), then bbolt's own integrity check and etcd's status
// (hash, revision, keys), through etcdutl's snapshot library.
func VerifySnapshot(path string, skipHashCheck bool) (*SnapshotInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	info := &SnapshotInfo{Path: path, Size: st.Size()}
	if st.Size() == 0 {
		return nil, fmt.Errorf("snapshot %s is empty: the backup was not written; take a new one or use another", path)
	}
	info.HasHash = hasTrailer(st.Size())
	switch {
	case info.HasHash:
		if err := checkTrailer(path, st.Size()); err != nil {
			return nil, err
		}
	case !skipHashCheck:
		return nil, fmt.Errorf("snapshot %s has no sha256 trailer (size %d is not 512·n+32): it is truncated, damaged, or a copy of a data dir's db file. "+
			"If it is a db file copied from a data dir, pass --skip-hash-check", path, st.Size())
	}
	status, err := snapshotStatus(path, st.Size())
	if err != nil {
		return nil, fmt.Errorf("snapshot %s fails etcd's integrity check: %w", path, err)
	}
	info.Status = status
	return info, nil
}

func checkTrailer(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, size-sha256.Size); err != nil {
		return fmt.Errorf("read snapshot %s: %w", path, err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return fmt.Errorf("read snapshot trailer %s: %w", path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("snapshot %s is damaged: its sha256 is %x but its trailer says %x; use another backup", path, got[:8], want[:8])
	}
	return nil
}

// statusDeadline bounds bbolt's walk of a snapshot: a damaged file (one
// without a trailer, taken with --skip-hash-check) can hold page cycles
// that keep the walk going forever. A healthy file is walked at well over
// 20 MiB/s.
var statusDeadline = func(size int64) time.Duration { return time.Minute + time.Duration(size/(20<<20))*time.Second }

// snapshotStatus runs etcdutl's status, which panics on some damaged files
// inside bbolt; a panic becomes an error, and so does a walk that does not
// end within statusDeadline (it is left to finish in the background).
func snapshotStatus(path string, size int64) (snapshot.Status, error) {
	type result struct {
		st  snapshot.Status
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		// A truncated file faults on bbolt's memory map: a panic too.
		debug.SetPanicOnFault(true)
		defer func() {
			if p := recover(); p != nil {
				r.err = fmt.Errorf("bbolt: %v", p)
			}
			done <- r
		}()
		r.st, r.err = snapshot.NewV3(zap.NewNop()).Status(path)
		if r.err == nil && r.st.Revision == 0 && r.st.TotalKey == 0 && r.st.TotalSize == 0 {
			r.err = errors.New("not an etcd snapshot (no key bucket)")
		}
	}()
	limit := statusDeadline(size)
	select {
	case r := <-done:
		return r.st, r.err
	case <-time.After(limit):
		return snapshot.Status{}, fmt.Errorf("bbolt's walk of the file did not end within %s: its pages are damaged (a loop); use another backup", limit)
	}
}

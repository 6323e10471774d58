package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
)

// Options tunes Verify.
type Options struct {
	// SkipHashCheck accepts a snapshot without its sha256 trailer (a db
	// file copied from a data dir). Default false.
	SkipHashCheck bool
	// WorkDir is where the snapshot of a single-file backup is extracted;
	// empty means a new temporary folder.
	WorkDir string
	// Budget bounds the tarball's extracted size; 0 means DefaultExtractBudget.
	Budget int64
	// MaxEntries bounds the tarball's entries; 0 means DefaultMaxEntries.
	MaxEntries int
	// Progress, if set, follows the snapshot's checks (see Progress).
	Progress Progress
	// Snapshot, if set, checks the snapshot in place of VerifySnapshot
	// (a restore stages it with StageSnapshot, reading it once).
	Snapshot func(ctx context.Context, path string) (*SnapshotInfo, error)
	// SingleFile, if set, checks a single-file backup's tarball and its
	// snapshot in one pass, in place of CheckTarball, the extraction and
	// Snapshot (a restore stages the snapshot with StageTarball). Nil infos
	// and a nil error have Verify take that longer way instead.
	SingleFile func(ctx context.Context, tarball string, c TarCheck) (*TarInfo, *SnapshotInfo, error)
}

// Report is what Verify found.
type Report struct {
	Set       *Set
	Snapshot  *SnapshotInfo
	Resources *TarInfo
	Warnings  []string
	// scratch removes the snapshot extracted from a single-file backup.
	scratch func() error
}

// Close removes the scratch copy of a single-file backup's snapshot (and
// the temporary folder Verify made for it); Set.Snapshot names that copy
// until then. It does nothing for other backups, and is safe to call more
// than once.
func (r *Report) Close() error {
	if r == nil || r.scratch == nil {
		return nil
	}
	f := r.scratch
	r.scratch = nil
	return f()
}

// Verify is VerifyContext without cancellation.
func Verify(set *Set, o Options) (*Report, error) {
	return VerifyContext(context.Background(), set, o)
}

// VerifyContext checks every file of a backup. An error means the backup
// must not be used; the message says which file is wrong and how. The
// tarball is listed and bounded (entries, size) before anything is
// extracted, and ctx stops the walk promptly. A single-file backup's
// snapshot is extracted to a scratch copy: on an error it is removed
// before VerifyContext returns, on success the caller removes it with
// Report.Close once it is done with Set.Snapshot. When Options.SingleFile
// reads the backup instead, nothing is extracted and Set.Snapshot stays
// empty.
func VerifyContext(ctx context.Context, set *Set, o Options) (rep *Report, err error) {
	r := &Report{Set: set}
	defer func() {
		if err != nil {
			if cerr := r.Close(); cerr != nil {
				err = fmt.Errorf("%w (and removing the scratch copy failed: %v)", err, cerr)
			}
		}
	}()
	tc := TarCheck{Budget: o.Budget, MaxEntries: o.MaxEntries, Single: set.Form == SingleFile}
	var si *SnapshotInfo
	if set.Form == SingleFile && set.Snapshot == "" && o.SingleFile != nil {
		if r.Resources, si, err = o.SingleFile(ctx, set.Resources, tc); err != nil {
			return nil, err
		}
	}
	if set.Resources != "" && r.Resources == nil {
		ti, err := CheckTarball(ctx, set.Resources, tc)
		if err != nil {
			return nil, err
		}
		r.Resources = ti
		if set.Form == SingleFile && set.Snapshot == "" {
			p, remove, err := extractSnapshot(ctx, set.Resources, ti.Snapshot, o.WorkDir)
			if err != nil {
				return nil, err
			}
			r.scratch = func() error {
				set.Snapshot = ""
				return remove()
			}
			set.Snapshot = p
		}
	}
	if si == nil {
		check := o.Snapshot
		if check == nil {
			check = func(ctx context.Context, path string) (*SnapshotInfo, error) {
				return VerifySnapshot(ctx, path, o.SkipHashCheck, o.Progress)
			}
		}
		if si, err = check(ctx, set.Snapshot); err != nil {
			return nil, err
		}
	}
	r.Snapshot = si
	if !si.HasHash {
		r.Warnings = append(r.Warnings, "the snapshot has no sha256 trailer: only the structure check vouches for it")
	}
	r.Warnings = append(r.Warnings, set.Notes...)
	return r, nil
}

// extractSnapshot copies the snapshot entry of a single-file backup to a
// file in workDir, so etcd's restore and bbolt can open it. remove deletes
// the copy, and the folder when extractSnapshot made a temporary one; on an
// error nothing is left behind.
func extractSnapshot(ctx context.Context, tarPath, entry, workDir string) (out string, remove func() error, err error) {
	removeDir := func() error { return nil }
	if workDir == "" {
		d, err := os.MkdirTemp("", "etcd-rescue-snapshot-")
		if err != nil {
			return "", nil, err
		}
		workDir = d
		removeDir = func() error { return os.RemoveAll(d) }
	}
	defer func() {
		if err != nil {
			_ = removeDir()
		}
	}()
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return "", nil, err
	}
	out = filepath.Join(workDir, filepath.Base(entry))
	f, err := atomicfile.Create(out, 0o600)
	if err != nil {
		return "", nil, err
	}
	found := false
	err = walkTar(ctx, tarPath, nil, func(h *tar.Header, r io.Reader) error {
		if found || h.Typeflag != tar.TypeReg || EntryName(h.Name) != entry {
			return nil
		}
		found = true
		_, err := io.Copy(f, r)
		return err
	})
	if err == nil && !found {
		err = fmt.Errorf("snapshot %s not found", entry)
	}
	if err != nil {
		f.Abort()
		return "", nil, fmt.Errorf("extract %s from %s: %w", entry, tarPath, err)
	}
	if err := f.Commit(); err != nil {
		return "", nil, fmt.Errorf("extract %s from %s: %w", entry, tarPath, err)
	}
	return out, func() error {
		if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return removeDir()
	}, nil
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "backup\t%s (%s, timestamp %s)\n", r.Set.Dir, r.Set.Form, orDash(r.Set.Timestamp))
	if s := r.Snapshot; s != nil {
		hash := "checked (sha256 trailer matches)"
		if !s.HasHash {
			hash = "absent (skipped)"
		}
		fmt.Fprintf(tw, "snapshot\t%s\n", s.Path)
		fmt.Fprintf(tw, "  size\t%d bytes\n", s.Size)
		fmt.Fprintf(tw, "  sha256\t%s\n", hash)
		fmt.Fprintf(tw, "  bbolt\tintegrity check passed (every page: reachable once or free, key order, etcd revisions)\n")
		if c := s.Check; c != nil {
			fmt.Fprintf(tw, "  pages\t%d of %d bytes (%d branch, %d leaf, %d overflow, %d free)\n", c.Pages, c.PageSize, c.BranchPages, c.LeafPages, c.OverflowPages, c.FreePages)
			fmt.Fprintf(tw, "  revisions\t%d (%d deletions), %d to %d\n", c.Keys, c.Tombstones, c.MinRevision, c.MaxRevision)
			for _, w := range c.Warnings {
				fmt.Fprintf(tw, "note\t%s\n", w)
			}
		}
		fmt.Fprintf(tw, "  hash\t%08x\n", s.Status.Hash)
		fmt.Fprintf(tw, "  revision\t%d\n", s.Status.Revision)
		fmt.Fprintf(tw, "  total keys\t%d\n", s.Status.TotalKey)
		fmt.Fprintf(tw, "  total size\t%d bytes\n", s.Status.TotalSize)
		fmt.Fprintf(tw, "  storage version\t%s\n", orDash(s.Status.Version))
	}
	if t := r.Resources; t != nil {
		fmt.Fprintf(tw, "static resources\t%s\n", t.Path)
		fmt.Fprintf(tw, "  entries\t%d (%d bytes), all inside the target\n", t.Entries, t.Bytes)
		fmt.Fprintf(tw, "  top level\t%v\n", t.TopDirs)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(tw, "note\t%s\n", w)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

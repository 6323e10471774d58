package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
)

// checkSnapshot is the verify-backup step's one read of the snapshot: it
// copies it into the staging folder while hashing it, then checks the copy
// while it is still in the page cache (backup.StageSnapshot), so that the
// restore-snapshot step only edits that copy. The staging folder is this
// run's scratch space inside the data dir (keep never moves it as old
// data); a damaged snapshot removes it before the error is returned, and a
// run that fails later removes it too (dropStaged).
//
// Where mayStage says no, the snapshot is only read, as it is when the
// staging copy cannot be written (a read-only root, a full disk): the
// checks that follow name those, and the restore-snapshot step stages the
// snapshot itself.
func (r *restore) checkSnapshot(ctx context.Context, path string) (*backup.SnapshotInfo, error) {
	r.staged = ""
	verify := func() (*backup.SnapshotInfo, error) {
		m := r.meter("verify "+filepath.Base(path), 0)
		defer m.Finish()
		return backup.VerifySnapshot(ctx, path, r.o.SkipHashCheck, m.Func())
	}
	if !r.mayStage() {
		return verify()
	}
	var info *backup.SnapshotInfo
	db, err := r.stage(ctx, path, func(db string, p backup.Progress) (err error) {
		info, err = backup.StageSnapshot(ctx, path, db, r.o.SkipHashCheck, p)
		return err
	})
	switch {
	case errors.Is(err, backup.ErrStaging):
		fmt.Fprintf(r.out, "    the snapshot cannot be staged in the data dir (%v): checking it in place\n", err)
		return verify()
	case err != nil:
		return nil, err
	}
	r.staged = db
	return info, nil
}

// checkSingleFile is checkSnapshot for a single-file backup: the
// verify-backup step's one read of the .tar.gz checks its entries and
// stages the snapshot entry as it streams past (backup.StageTarball).
// Where checkSnapshot would only read (see there), and when the staging
// copy cannot be written, it returns nothing and the backup is read the
// longer way (backup.VerifyContext): the tarball is checked, its snapshot
// extracted into the work dir and that copy read by checkSnapshot, three
// reads of the snapshot's bytes; the restore-snapshot step stages that copy.
func (r *restore) checkSingleFile(ctx context.Context, tarball string, c backup.TarCheck) (ti *backup.TarInfo, info *backup.SnapshotInfo, err error) {
	r.staged, r.noStaging = "", false
	if !r.mayStage() {
		return nil, nil, nil
	}
	db, err := r.stage(ctx, tarball, func(db string, p backup.Progress) (err error) {
		ti, info, err = backup.StageTarball(ctx, tarball, c, db, r.o.SkipHashCheck, p)
		return err
	})
	switch {
	case errors.Is(err, backup.ErrStaging):
		fmt.Fprintf(r.out, "    the snapshot cannot be staged in the data dir (%v): checking the backup without staging it\n", err)
		r.noStaging = true
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	r.staged = db
	return ti, info, nil
}

// mayStage says whether the verify-backup step stages the snapshot: not
// for a dry run, a run whose restore is already committed, or a data dir
// that does not exist as a folder (nothing is written for them), nor once
// staging a single-file backup's snapshot failed to write.
func (r *restore) mayStage() bool {
	if r.o.DryRun || r.restoreCommitted() || r.noStaging {
		return false
	}
	st, err := os.Stat(r.abs(r.prof.DataDir))
	return err == nil && st.IsDir()
}

// stage has write copy the backup file src into the staged db file, in a
// fresh staging folder, and check it; the folder is removed on any error.
func (r *restore) stage(ctx context.Context, src string, write func(db string, p backup.Progress) error) (db string, err error) {
	staging := r.stagingDir()
	if err := os.RemoveAll(staging); err != nil {
		return "", fmt.Errorf("%w: %w", backup.ErrStaging, err)
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(staging); rerr != nil {
				err = fmt.Errorf("%w (and removing the staging folder %s failed: %v)", err, staging, rerr)
			}
		}
	}()
	db = stagedDB(staging)
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		return "", fmt.Errorf("%w: %w", backup.ErrStaging, err)
	}
	m := r.meter("stage "+filepath.Base(src), 0)
	defer m.Finish()
	if err := write(db, m.Func()); err != nil {
		return "", err
	}
	return db, nil
}

// stagedDB is where etcd's restore wants the db file in a data dir.
func stagedDB(dataDir string) string { return filepath.Join(dataDir, "member", "snap", "db") }

// dropStaged removes the staging folder of a run that failed before its
// final rename: this run's own scratch copy, never old state. The next run
// stages the snapshot again.
func (r *restore) dropStaged() {
	if r.j == nil || r.o.DryRun || r.j.Notes["restoreCommitting"] == "true" {
		return
	}
	r.staged = ""
	if err := os.RemoveAll(r.stagingDir()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(r.out, "warning: remove the restore's staging folder: %v\n", err)
	}
}

// meter shows a long read or write on the run's output, as Options.Progress says.
func (r *restore) meter(label string, total int64) *progress.Meter {
	return progress.New(r.out, label, total, r.meterOptions(""))
}

// meterOptions are the meters' options, for a count of unit ("": bytes).
func (r *restore) meterOptions(unit string) progress.Options {
	return progress.Options{Mode: r.o.Progress, Unit: unit}
}

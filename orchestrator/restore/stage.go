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
// A dry run, a run whose restore is already committed, and a data dir that
// does not exist as a folder only read the snapshot (nothing is written
// for them), as does a staging copy that cannot be written (a read-only
// root, a full disk): the checks that follow name those, and the
// restore-snapshot step stages the snapshot itself.
func (r *restore) checkSnapshot(ctx context.Context, path string) (*backup.SnapshotInfo, error) {
	r.staged = ""
	verify := func() (*backup.SnapshotInfo, error) {
		m := r.meter("verify "+filepath.Base(path), 0)
		defer m.Finish()
		return backup.VerifySnapshot(ctx, path, r.o.SkipHashCheck, m.Func())
	}
	if r.o.DryRun || r.restoreCommitted() {
		return verify()
	}
	if st, err := os.Stat(r.abs(r.prof.DataDir)); err != nil || !st.IsDir() {
		return verify()
	}
	info, db, err := r.stage(ctx, path)
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

// stage copies and checks the snapshot into a fresh staging folder,
// removed again on any error.
func (r *restore) stage(ctx context.Context, path string) (info *backup.SnapshotInfo, db string, err error) {
	staging := r.stagingDir()
	if err := os.RemoveAll(staging); err != nil {
		return nil, "", fmt.Errorf("%w: %w", backup.ErrStaging, err)
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
		return nil, "", fmt.Errorf("%w: %w", backup.ErrStaging, err)
	}
	m := r.meter("stage "+filepath.Base(path), 0)
	defer m.Finish()
	info, err = backup.StageSnapshot(ctx, path, db, r.o.SkipHashCheck, m.Func())
	if err != nil {
		return nil, "", err
	}
	return info, db, nil
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

package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

const (
	// bumpMargin is added to the revisions the old data dir shows were
	// written after the backup: writes the survivor never received.
	bumpMargin = 1_000_000
	// bumpUnknown is the bump when no old data dir tells how far the
	// cluster got: OpenShift's default, about 11 days at 1000 writes/s.
	bumpUnknown = 1_000_000_000
)

func (r *restore) restoreSnapshotStep() steps.Step {
	return steps.Step{
		Name: "restore-snapshot",
		Describe: func() string {
			bump, why := r.bump()
			return fmt.Sprintf("restore %s into %s as member %s (%s) of a new cluster (token %s, cluster ID %s); revision bump %d (%s), marked compacted",
				r.snapshotName(), r.abs(r.prof.DataDir), r.member.Name, r.member.PeerURL, r.token(), r.clusterID(), bump, why)
		},
		Check: r.checkRestored,
		Run:   func(ctx context.Context) error { return r.restoreSnapshot(ctx) },
	}
}

// checkRestored is the Check of the steps that write the restored member
// (restore-snapshot, restore-survivor-data): done once this run's member
// is in the data dir; a member folder this run did not write is refused.
func (r *restore) checkRestored(context.Context) (steps.State, error) {
	if r.restoreCommitted() {
		// A crash right after the final rename may have left the
		// emptied staging folder: removeScratch removes it.
		return steps.Done, nil
	}
	if _, err := os.Stat(filepath.Join(r.abs(r.prof.DataDir), "member")); err == nil {
		return steps.ToDo, fmt.Errorf("%s/member exists but is neither the old data (kept at %s) nor written by this restore: was etcd started in between? Move it aside and re-run",
			r.abs(r.prof.DataDir), r.keptDataDirTarget())
	}
	return steps.ToDo, nil
}

// restoreCommitted reports whether the data dir holds the member this run
// restored. The journal says "committing" before the final rename, so a
// crash on either side of the rename is told apart.
func (r *restore) restoreCommitted() bool {
	if r.j == nil {
		return false
	}
	member := filepath.Join(r.abs(r.prof.DataDir), "member")
	if _, err := os.Stat(member); err != nil {
		return false
	}
	if r.j.Notes["restoreCommitted"] == "true" {
		return true
	}
	if r.j.Notes["restoreCommitting"] == "true" {
		_, err := os.Stat(filepath.Join(r.stagingDir(), "member"))
		return errors.Is(err, fs.ErrNotExist)
	}
	return false
}

// removeScratch removes the emptied staging folder a crash right after the
// final rename leaves in the data dir: this run's own scratch space, never
// old state. It runs once every step succeeded.
func (r *restore) removeScratch() error {
	if !r.restoreCommitted() {
		return nil
	}
	if err := os.RemoveAll(r.stagingDir()); err != nil {
		return fmt.Errorf("remove the restore's staging folder: %w", err)
	}
	return nil
}

func (r *restore) stagingDir() string {
	return filepath.Join(r.abs(r.prof.DataDir), stagingPrefix+r.j.RunID)
}

// bump returns the revision bump and why it is that much. It is computed
// once and kept in the journal, so a resumed run uses the same value.
func (r *restore) bump() (int64, string) {
	if r.o.RevisionBump > 0 {
		return r.o.RevisionBump, "given with --revision-bump"
	}
	if v, ok := r.j.Notes["bump"]; ok {
		n, _ := strconv.ParseInt(v, 10, 64)
		return n, r.j.Notes["bumpWhy"]
	}
	snapRev := r.report.Snapshot.Status.Revision
	if info, _ := r.oldData(); info != nil {
		ahead := max(info.Revision-snapRev, 0)
		// The margin covers what this backend does not show: writes still
		// only in its WAL, or applied on other members but not here.
		return ahead + bumpMargin, fmt.Sprintf("old data dir's backend is at revision %d, the snapshot at %d: %d written after the backup, "+
			"+ %d margin for writes only in the WAL or on other members", info.Revision, snapRev, ahead, bumpMargin)
	}
	if r.oldDataErr != nil {
		return bumpUnknown, fmt.Sprintf("the old data dir cannot be read (%v), so nothing tells how far the cluster got: the OpenShift default", r.oldDataErr)
	}
	return bumpUnknown, "no old data dir tells how far the cluster got: the OpenShift default"
}

func (r *restore) clusterID() string {
	if id := r.j.Notes["clusterID"]; id != "" {
		return id
	}
	m, err := types.NewURLsMap(plan.InitialCluster(r.member))
	if err != nil {
		return "?"
	}
	c, err := membership.NewClusterFromURLsMap(zap.NewNop(), r.token(), m)
	if err != nil {
		return "?"
	}
	return c.ID().String()
}

// beginRestoreInto makes the data dir (with the old one's mode, as
// keep-old-state recorded it) and journals the bump and the new cluster ID
// (and the source's other notes) before anything is restored, so a resumed
// run restores the same.
func (r *restore) beginRestoreInto(bump int64, why string, notes map[string]string) (dataDir string, err error) {
	dataDir = r.abs(r.prof.DataDir)
	mode := fs.FileMode(0o700)
	if m, err := strconv.ParseUint(r.j.Notes["dataDirMode"], 8, 32); err == nil {
		mode = fs.FileMode(m)
	}
	if err := os.MkdirAll(dataDir, mode); err != nil {
		return "", err
	}
	r.j.Notes["bump"] = strconv.FormatInt(bump, 10)
	r.j.Notes["bumpWhy"] = why
	r.j.Notes["clusterID"] = r.clusterID()
	maps.Copy(r.j.Notes, notes)
	return dataDir, r.j.Save()
}

// restoreSnapshot checks ctx between its phases: a SIGINT or SIGTERM
// stops it before the next one, and the staging folder it leaves is
// started anew by the next run.
func (r *restore) restoreSnapshot(ctx context.Context) error {
	bump, why := r.bump()
	dataDir, err := r.beginRestoreInto(bump, why, map[string]string{
		"revision": strconv.FormatInt(r.report.Snapshot.Status.Revision+bump, 10)})
	if err != nil {
		return err
	}

	staging := r.stagingDir()
	if r.staged == "" {
		// No copy staged by this process (a resumed run, or one the
		// verify-backup step could not write): a crash during an earlier
		// attempt leaves this run's own partial output in the staging
		// folder, which holds nothing else, so start it anew.
		if err := r.restage(ctx, staging); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	edits := inPlace{
		DataDir:             staging,
		Name:                r.member.Name,
		PeerURL:             r.member.PeerURL,
		InitialCluster:      plan.InitialCluster(r.member),
		InitialClusterToken: r.token(),
		LatestRevision:      r.report.Snapshot.Check.MaxRevision,
		RevisionBump:        bump,
	}
	if err := edits.run(zap.NewNop()); err != nil {
		return fmt.Errorf("etcd snapshot restore: %w", err)
	}
	r.staged = ""
	if err := r.commitStaged(ctx, staging, dataDir); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "    restored revision %d, bumped to %s; new cluster ID %s\n",
		r.report.Snapshot.Status.Revision, r.j.Notes["revision"], r.j.Notes["clusterID"])
	return r.j.Note("restoreCommitted", "true")
}

// commitStaged puts a restored member folder in place: owned as the old
// data dir was, synced, then renamed into the data dir under a journal
// note, so a crash on either side of the rename is told apart.
func (r *restore) commitStaged(ctx context.Context, staging, dataDir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.chownDataDir(staging); err != nil {
		return err
	}
	if err := syncTree(staging); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.j.Note("restoreCommitting", "true"); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(staging, "member"), filepath.Join(dataDir, "member")); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(dataDir); err != nil {
		return err
	}
	return os.Remove(staging)
}

// restage stages the snapshot the verify-backup step checked, and refuses
// it if it is not the same one any more. A single-file backup whose
// snapshot that step staged in one pass (nothing extracted) is read in one
// pass again, a second read of the tarball; one it extracted is staged
// from the extracted copy.
func (r *restore) restage(ctx context.Context, staging string) error {
	var info *backup.SnapshotInfo
	db, err := r.stage(ctx, r.snapshotName(), func(db string, p backup.Progress) (err error) {
		if r.set.Snapshot == "" {
			_, info, err = backup.StageTarball(ctx, r.set.Resources, backup.TarCheck{}, db, r.o.SkipHashCheck, p)
			return err
		}
		info, err = backup.StageSnapshot(ctx, r.set.Snapshot, db, r.o.SkipHashCheck, p)
		return err
	}) // starts staging anew
	if err != nil {
		return err
	}
	if want := r.report.Snapshot.Status; info.Status != want {
		os.RemoveAll(staging)
		return fmt.Errorf("snapshot %s changed since the verify-backup step (hash %08x, now %08x): re-run to verify it again",
			r.snapshotName(), want.Hash, info.Status.Hash)
	}
	r.staged = db
	return nil
}

// snapshotName names the snapshot the verify-backup step checked: its
// file, or the entry of a single-file backup staged in one pass.
func (r *restore) snapshotName() string {
	if r.set.Snapshot == "" && r.report != nil && r.report.Snapshot != nil {
		return r.report.Snapshot.Path
	}
	return r.set.Snapshot
}

// chownDataDir gives the restored files the old data dir's owner.
func (r *restore) chownDataDir(dir string) error {
	uid, err1 := strconv.Atoi(r.j.Notes["dataDirUID"])
	gid, err2 := strconv.Atoi(r.j.Notes["dataDirGID"])
	if err1 != nil || err2 != nil || os.Geteuid() != 0 {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// syncTree fsyncs every file and folder under dir.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

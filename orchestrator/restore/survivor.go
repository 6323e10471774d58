package restore

// The survivor-data source: the restore starts from the survivor's own data
// dir instead of a backup. The data dir is surveyed (read-only) before
// anything changes; after keep-old-state has moved it aside untouched, a
// copy of it is brought up to date with its own WAL by etcd's server code
// (package replay), and that copy's backend is restored like a backup's
// snapshot: new cluster ID and member, revision bump, marked compacted.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/boltcheck"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcdversion"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/replay"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// fromSurvivor says the run restores from the survivor's own data.
func (r *restore) fromSurvivor() bool { return r.o.Source == plan.SourceSurvivorData }

// survivorIsDataDir says the survivor's data is the master's own data dir,
// which keep-old-state moves aside before the restore reads it again.
func (r *restore) survivorIsDataDir() bool {
	if r.o.FromDataDir == "" {
		return true
	}
	p, err := filepath.Abs(r.o.FromDataDir)
	if err != nil {
		return false
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return p == r.abs(r.prof.DataDir)
}

// survivorDir is where the survivor's data is now: a data dir given
// elsewhere stays where it is; the master's own is in place until
// keep-old-state moves it, then where that step kept it.
func (r *restore) survivorDir() string {
	if !r.survivorIsDataDir() {
		p, _ := filepath.Abs(r.o.FromDataDir)
		return p
	}
	if kept := r.j.Notes["keptDataDir"]; kept != "" {
		if _, err := os.Stat(filepath.Join(kept, "member")); err == nil {
			return kept
		}
	}
	return r.abs(r.prof.DataDir)
}

// checkSurvivorOutside refuses a data dir given with --from-data-dir that
// lies inside a folder the restore moves aside or rewrites.
func (r *restore) checkSurvivorOutside() error {
	if r.survivorIsDataDir() {
		return nil
	}
	p := r.survivorDir()
	for _, rel := range []string{r.prof.DataDir, r.prof.ManifestDir, r.prof.CertDir, r.prof.StaticPodResources} {
		if rel == "" {
			continue
		}
		dir := r.abs(rel)
		if p == dir || strings.HasPrefix(p, dir+string(filepath.Separator)) || strings.HasPrefix(dir, p+string(filepath.Separator)) {
			return fmt.Errorf("the data dir %s overlaps %s, which the restore moves aside or rewrites: copy it somewhere else and pass that with --from-data-dir",
				r.o.FromDataDir, dir)
		}
	}
	return nil
}

func (r *restore) verifySurvivorStep() steps.Step {
	return steps.Step{
		Name:     "verify-survivor-data",
		ReadOnly: true,
		Describe: func() string {
			return "survey the survivor's data dir " + r.survivorDir() + " (read-only): its WAL must be readable and its backend sound"
		},
		Check: func(context.Context) (steps.State, error) { return steps.ToDo, nil },
		Run:   r.verifySurvivor,
	}
}

// verifySurvivor surveys the survivor's data dir and refuses one the
// restore cannot start from, pointing to the backup instead.
func (r *restore) verifySurvivor(ctx context.Context) error {
	if err := r.sameSurvivorAsBefore(); err != nil {
		return err
	}
	dir := r.survivorDir()
	if err := checkNotRunning(dir); err != nil {
		return err
	}
	rep, err := survey.Run(survey.Options{DataDirs: []string{dir}, Log: steps.Indent(r.out), Progress: r.meterOptions("")})
	if err != nil {
		return err
	}
	s := rep.Sources[0]
	rep.WriteTable(steps.Indent(r.out))
	if !s.Usable() {
		return fmt.Errorf("the survivor's data dir %s cannot be restored from: %s. Restore from the backup instead (etcd-rescue restore --backup DIR); `etcd-rescue survey` compares the sources",
			dir, s.Error)
	}
	// The survey reads only the pages on its way; etcd's server, which
	// replays the WAL on the copy, may read any page, and a damaged one
	// would crash it. Every page is checked first, as a backup's are.
	db := etcddata.DBPath(dir)
	m := r.meter("check the survivor's backend", 0)
	_, err = boltcheck.Check(ctx, db, boltcheck.Options{Progress: func(p boltcheck.Progress) { m.Set(p.Bytes, p.BytesTotal) }})
	m.Finish()
	if err != nil {
		return fmt.Errorf("the survivor's data dir %s cannot be restored from: %s fails etcd's integrity check: %w. Restore from the backup instead (etcd-rescue restore --backup DIR)",
			dir, db, err)
	}
	fmt.Fprintf(r.out, "    backend %s: every page checked\n", db)
	if s.WAL.Commit < s.WAL.LastIndex {
		fmt.Fprintf(r.out, "    the WAL holds %d entries after the commit index the member saved (%d): the restore keeps them\n",
			s.WAL.LastIndex-s.WAL.Commit, s.WAL.Commit)
	}
	r.survivor = s
	r.backupFile = "survivor-data " + dir
	return nil
}

// survivorSource names the survivor's data dir for the journal: a path on
// the master's root as the master sees it, "root:" first (the rescue image
// may mount the root elsewhere at the next boot), else the path given.
func (r *restore) survivorSource() string {
	if r.survivorIsDataDir() {
		return onRoot + filepath.Join("/", r.prof.DataDir)
	}
	p := r.survivorDir()
	if rel, err := filepath.Rel(r.root.Path, p); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return onRoot + filepath.Join("/", rel)
	}
	return p
}

const onRoot = "root:"

// sameSurvivorAsBefore makes a resumed run read the data dir the first
// attempt read: the steps done so far (the revision bump, the kept state)
// were decided from it.
func (r *restore) sameSurvivorAsBefore() error {
	prev := r.j.Notes["survivorDataDir"] // written by the first step that changes anything
	now := r.survivorSource()
	if prev == "" || prev == now || r.restoreCommitted() {
		return nil
	}
	own := onRoot + filepath.Join("/", r.prof.DataDir)
	name := func(src string) string {
		if src == own {
			return "the master's own data dir " + strings.TrimPrefix(src, onRoot)
		}
		if p, ok := strings.CutPrefix(src, onRoot); ok {
			return "the survivor's data dir " + p + " on the master's root"
		}
		return "the survivor's data dir " + src
	}
	how := "pass --from-data-dir " + prev
	switch p, ok := strings.CutPrefix(prev, onRoot); {
	case prev == own:
		how = "run it without --from-data-dir (keep-old-state kept that data dir at " + r.keptDataDirTarget() + ")"
	case ok:
		how = "pass --from-data-dir " + r.abs(p)
	}
	return fmt.Errorf("this restore started from %s but is now given %s: %s to resume it, or move %s aside to start a new run",
		name(prev), name(now), how, r.j.File())
}

// survivorWrittenBy is the etcd version the survivor's data records, or nil.
func (r *restore) survivorWrittenBy() *etcdversion.Version {
	if r.survivor == nil {
		return nil
	}
	if v, err := etcdversion.Parse(r.survivor.Version); err == nil {
		return &v
	}
	return nil
}

// checkSurvivorDisk wants room for the copy of the data dir (next to the
// journal) and the restored db and its WAL (in the data dir).
func (r *restore) checkSurvivorDisk() error {
	size, err := treeSize(filepath.Join(r.survivorDir(), "member"))
	if err != nil {
		return err
	}
	db := uint64(0)
	if st, err := os.Stat(etcddata.DBPath(r.survivorDir())); err == nil {
		db = uint64(st.Size())
	}
	wd, err := r.workDir()
	if err != nil {
		return err
	}
	needs := map[string]uint64{}
	copyAt := keep.NearestExisting(wd)
	dataAt := keep.NearestExisting(r.abs(r.prof.DataDir))
	needs[copyAt] += size
	if sameFS(copyAt, dataAt) {
		needs[copyAt] += 2 * db
	} else {
		needs[dataAt] += 2 * db
	}
	// A resumed run finds the copy and the staging folder of the attempt a
	// crash cut short: restore-survivor-data removes them first, so their
	// room counts as free.
	reclaim := map[string]uint64{}
	reclaim[copyAt] += leftover(r.replayDir())
	if sameFS(copyAt, dataAt) {
		reclaim[copyAt] += leftover(r.stagingDir())
	} else {
		reclaim[dataAt] += leftover(r.stagingDir())
	}
	for dir, need := range needs {
		free, err := r.diskFree(dir)
		if err != nil {
			return fmt.Errorf("free space on %s: %w", dir, err)
		}
		if n := reclaim[dir]; n > 0 {
			fmt.Fprintf(r.out, "    %d MiB on %s hold the copy an earlier attempt left, which restore-survivor-data replaces\n", n>>20, dir)
			free += n
		}
		fmt.Fprintf(r.out, "    free space on %s: %d MiB, restore needs %d MiB\n", dir, free>>20, need>>20)
		if free < need {
			return fmt.Errorf("%s has %d MiB free but the restore needs %d MiB (a copy of the survivor's data dir and the restored db): free space there first", dir, free>>20, need>>20)
		}
	}
	return nil
}

func (r *restore) restoreSurvivorStep() steps.Step {
	return steps.Step{
		Name: "restore-survivor-data",
		Describe: func() string {
			bump, why := r.survivorBump()
			return fmt.Sprintf("copy %s to %s, commit and apply every entry of its WAL there (etcd's own server, as a forced new cluster), and restore the result into %s as member %s (%s) of a new cluster (token %s, cluster ID %s); revision bump %d (%s), marked compacted",
				r.survivorDir(), r.replayDir(), r.abs(r.prof.DataDir), r.member.Name, r.member.PeerURL, r.token(), r.clusterID(), bump, why)
		},
		Check: r.checkRestored,
		Run:   func(ctx context.Context) error { return r.restoreSurvivor(ctx) },
	}
}

// replayDir is the copy of the survivor's data dir, in this run's work
// folder: never the data dir itself, which keep-old-state kept aside.
func (r *restore) replayDir() string {
	wd, err := r.workDir()
	if err != nil {
		return ""
	}
	return filepath.Join(wd, "survivor-copy")
}

// survivorBump is the revision bump for the survivor's data. The copy
// reaches at least RevisionAtLeast (every certain write in the WAL) and at
// most RevisionAtMost; adding their difference puts the restored revision
// past anything the survivor's log could have produced, and the margin
// covers writes other members applied after the survivor stopped. It is
// kept in the journal, so a resumed run uses the same value.
func (r *restore) survivorBump() (int64, string) {
	if r.o.RevisionBump > 0 {
		return r.o.RevisionBump, "given with --revision-bump"
	}
	if v, ok := r.j.Notes["bump"]; ok {
		n, _ := strconv.ParseInt(v, 10, 64)
		return n, r.j.Notes["bumpWhy"]
	}
	s := r.survivor
	if s == nil {
		return bumpUnknown, "the survivor's data dir was not surveyed: the OpenShift default"
	}
	spread := max(s.RevisionAtMost-s.RevisionAtLeast, 0)
	return spread + bumpMargin, fmt.Sprintf("the survivor's WAL reaches revision %d to %d: %d whose outcome only applying tells, "+
		"+ %d margin for writes other members applied after it stopped", s.RevisionAtLeast, s.RevisionAtMost, spread, bumpMargin)
}

// restoreSurvivor starts anew at every attempt: the copy and the staging
// folder hold only this run's own output.
func (r *restore) restoreSurvivor(ctx context.Context) error {
	bump, why := r.survivorBump()
	dataDir, err := r.beginRestoreInto(bump, why, nil)
	if err != nil {
		return err
	}

	cp, staging := r.replayDir(), r.stagingDir()
	for _, d := range []string{cp, staging} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(cp), 0o700); err != nil {
		return err
	}
	src := r.survivorDir()
	fmt.Fprintf(r.out, "    copying %s to %s\n", src, cp)
	m := r.meter("copy "+src, 0) // Copy gives the total
	err = replay.Copy(src, cp, m.Func())
	m.Finish()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := replay.CommitLog(cp)
	if err != nil {
		return fmt.Errorf("%w: restore from the backup instead (etcd-rescue restore --backup DIR)", err)
	}
	fmt.Fprintf(r.out, "    WAL of the copy: entries to %d (term %d), commit index saved %d, raised by %d", l.LastIndex, l.LastTerm, l.Commit, l.Raised())
	if l.V2Requests > 0 {
		fmt.Fprintf(r.out, "; %d v2 requests emptied (they write only the v2 store, which the restore rebuilds)", l.V2Requests)
	}
	if l.Repaired {
		fmt.Fprint(r.out, "; a torn last record cut off, as etcd does")
	}
	fmt.Fprintln(r.out)
	m = progress.New(r.out, "apply the WAL", 0, r.meterOptions("entries"))
	a, err := replay.Apply(ctx, cp, l.LastIndex, m.Func())
	m.Finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(r.out, "    applied to raft index %d: revision %d\n", a.AppliedIndex, a.Revision)
	if err := r.checkReplayedVersion(a.Info); err != nil {
		return err
	}
	r.j.Notes["survivorRevision"] = strconv.FormatInt(a.Revision, 10)
	r.j.Notes["revision"] = strconv.FormatInt(a.Revision+bump, 10)
	if err := r.j.Save(); err != nil {
		return err
	}

	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        etcddata.DBPath(cp),
		Name:                r.member.Name,
		OutputDataDir:       staging,
		PeerURLs:            []string{r.member.PeerURL},
		InitialCluster:      plan.InitialCluster(r.member),
		InitialClusterToken: r.token(),
		// A data dir's db has no sha256 trailer.
		SkipHashCheck: true,
		RevisionBump:  uint64(bump),
		MarkCompacted: bump > 0,
	})
	if err != nil {
		return fmt.Errorf("etcd snapshot restore of the replayed copy: %w", err)
	}
	// The copy is no longer needed; a crash from here on starts the step
	// anew from the kept data dir.
	if err := os.RemoveAll(cp); err != nil {
		return err
	}
	if err := r.commitStaged(ctx, staging, dataDir); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "    restored the survivor's revision %d, bumped to %s; new cluster ID %s\n",
		a.Revision, r.j.Notes["revision"], r.j.Notes["clusterID"])
	return r.j.Note("restoreCommitted", "true")
}

// checkReplayedVersion refuses a replayed backend the master's etcd may
// not open: the WAL may have raised the cluster version past what the
// backend recorded when the survivor stopped.
func (r *restore) checkReplayedVersion(info *etcddata.Info) error {
	server, _ := r.serverVersion()
	if server == nil || info == nil {
		return nil
	}
	v, err := etcdversion.Parse(info.WrittenBy())
	if err != nil {
		return nil
	}
	return etcdversion.CheckBackup(*server, v)
}

// leftover is the size of what an earlier attempt left in dir, 0 when
// there is none.
func leftover(dir string) uint64 {
	if dir == "" {
		return 0
	}
	n, err := treeSize(dir)
	if err != nil {
		return 0
	}
	return n
}

func treeSize(dir string) (uint64, error) {
	var n uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += uint64(info.Size())
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	return n, err
}

func sameFS(a, b string) bool {
	var sa, sb syscall.Stat_t
	if syscall.Stat(a, &sa) != nil || syscall.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev
}

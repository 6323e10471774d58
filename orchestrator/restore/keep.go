package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// stagingPrefix names the folder, inside the data dir, the snapshot is
// restored into before its final rename; keep never moves it as old data.
const stagingPrefix = keep.ScratchPrefix + "restore-"

func (r *restore) keepOldStateStep() steps.Step {
	return steps.Step{
		Name: "keep-old-state",
		Describe: func() string {
			return fmt.Sprintf("move the old data dir %s aside to %s and copy the etcd manifest and certificates there",
				r.abs(r.prof.DataDir), r.keptDataDirTarget())
		},
		Check: func(context.Context) (steps.State, error) {
			if r.restoreCommitted() {
				return steps.Done, nil
			}
			if r.j.StepDone("keep-old-state") && len(r.oldEntries()) == 0 {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error { return r.keepOldState() },
	}
}

// keptDataDirTarget is where the old data dir's contents go (see
// keep.Keeper.ContentsTarget).
func (r *restore) keptDataDirTarget() string {
	if k := r.j.Notes["keptDataDir"]; k != "" {
		return k
	}
	return r.keeper().ContentsTarget(r.abs(r.prof.DataDir), r.prof.DataDir)
}

// Keeper keeps aside, in this run's backup folder and journal, what the
// steps given to Execute replace, and records what they create, so an undo
// of the run reverses them too.
func (x *Restore) Keeper() *keep.Keeper { return x.r.keeper() }

func (r *restore) keeper() *keep.Keeper {
	return &keep.Keeper{Root: r.o.Root, Journal: r.j, Out: r.out}
}

// oldEntries lists what in the data dir is old data still to be moved.
func (r *restore) oldEntries() []string { return keep.Entries(r.abs(r.prof.DataDir)) }

func (r *restore) keepOldState() error {
	dataDir := r.abs(r.prof.DataDir)
	if err := checkNotRunning(dataDir); err != nil {
		return err
	}
	if err := r.j.Note("backupFile", r.backupFile); err != nil {
		return err
	}
	if r.fromSurvivor() && r.j.Notes["survivorDataDir"] == "" {
		if err := r.j.Note("survivorDataDir", r.survivorSource()); err != nil {
			return err
		}
	}
	st, err := os.Stat(dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(r.out, "    %s does not exist: no old data to keep\n", dataDir)
		if err := r.j.Note("dataDirMode", "0700"); err != nil {
			return err
		}
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s is not a folder: move it aside by hand and re-run", dataDir)
	default:
		if r.j.Notes["dataDirMode"] == "" {
			s := st.Sys().(*syscall.Stat_t)
			r.j.Notes["dataDirUID"] = strconv.Itoa(int(s.Uid))
			r.j.Notes["dataDirGID"] = strconv.Itoa(int(s.Gid))
			r.j.Notes["dataDirMode"] = strconv.FormatUint(uint64(st.Mode().Perm()), 8)
		}
	}
	if err := r.j.Note("keptDataDir", r.keptDataDirTarget()); err != nil {
		return err
	}
	if _, err := r.keeper().MoveContents(dataDir, r.prof.DataDir); err != nil {
		return err
	}
	// The manifest, its environment file and the certificates stay in use;
	// copies record what they were before the rewrite.
	for _, rel := range []string{r.prof.Manifest, r.prof.EnvFile, r.prof.CertDir} {
		if rel == "" {
			continue
		}
		from := r.abs(rel)
		if rel == r.prof.Manifest {
			from = r.manifestPath() // an online restore has it stopped
		}
		if _, err := os.Lstat(from); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := r.keeper().Copy(from, r.keeper().Backup(rel)); err != nil {
			return err
		}
	}
	return nil
}

// checkNotRunning refuses to touch a data dir an etcd is running on.
func checkNotRunning(dataDir string) error {
	return etcddata.CheckNotRunning(dataDir, "stop it first, or restore with --online on a live master")
}

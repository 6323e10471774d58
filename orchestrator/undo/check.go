package undo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// checkInputsStep checks, before anything moves, that what the run kept is
// still there to put back and that no etcd runs on a data dir, and prints
// every move the undo will make.
func (u *undo) checkInputsStep() steps.Step {
	return steps.Step{
		Name:     "check-inputs",
		ReadOnly: true,
		Describe: func() string {
			return fmt.Sprintf("check what %s run %s kept (journal %s) and that no etcd runs on the data dir, and list every move",
				u.target.j.Operation, u.target.j.RunID, u.target.file)
		},
		Check: func(context.Context) (steps.State, error) { return steps.ToDo, nil },
		Run: func(context.Context) error {
			if err := u.checkInputs(); err != nil {
				return err
			}
			u.printPlan()
			return nil
		},
	}
}

// checkInputs checks that there is something to put back, that all of it
// is there, and that no etcd runs on a data dir it goes into.
func (u *undo) checkInputs() error {
	if len(u.items) == 0 {
		return fmt.Errorf("%s run %s kept nothing aside (journal %s): there is nothing to put back", u.target.j.Operation, u.target.j.RunID, u.target.file)
	}
	for _, it := range u.items {
		if it.Contents {
			if err := checkNotRunning(it.LiveHost); err != nil {
				return err
			}
		}
		if it.Created {
			continue // nothing kept: there may be nothing to move aside either
		}
		if err := u.checkKept(it); err != nil {
			return err
		}
	}
	return nil
}

// checkKept checks that an item's kept state is where the run put it, or
// already put back by this undo.
func (u *undo) checkKept(it item) error {
	started := u.j.Steps["put-back"].State != ""
	missing := func(p string) error {
		return fmt.Errorf("%s run %s kept %s at %s, but it is not there: an earlier undo may have put it back "+
			"(its journal is /%s/undo-state.json or /%s/backup/<run>/undo-state.json, and `etcd-rescue undo --run <that run>` reverses it); nothing was changed",
			u.target.j.Operation, u.target.j.RunID, it.Live, p, journal.Dir, journal.Dir)
	}
	if !it.Contents {
		if exists(it.Kept) || (started && exists(it.LiveHost)) || (it.Covered && exists(it.LiveHost)) {
			return nil
		}
		return missing(it.Kept)
	}
	for _, e := range it.Entries {
		k := filepath.Join(it.Kept, e)
		if exists(k) || (started && exists(filepath.Join(it.LiveHost, e))) {
			continue
		}
		return missing(k)
	}
	return nil
}

// printPlan lists every move: the restored state aside (what the run
// created included), then the kept state back.
func (u *undo) printPlan() {
	w := steps.Indent(u.out)
	k := u.keeper()
	for _, it := range u.items {
		switch {
		case it.Covered:
		case it.Created && !exists(it.LiveHost):
			fmt.Fprintf(w, "keep aside: %s (created by run %s) is gone: nothing to keep\n", it.LiveHost, u.target.j.RunID)
		case it.Created:
			fmt.Fprintf(w, "keep aside: %s -> %s (created by run %s: nothing to put back)\n", it.LiveHost, k.Backup(rel(it.Live)), u.target.j.RunID)
		case it.Contents:
			fmt.Fprintf(w, "keep aside: the contents of %s -> %s\n", it.LiveHost, k.ContentsTarget(it.LiveHost, rel(it.Live)))
		default:
			fmt.Fprintf(w, "keep aside: %s -> %s\n", it.LiveHost, k.Backup(rel(it.Live)))
		}
	}
	for _, it := range u.putBackOrder() {
		switch {
		case it.Contents:
			for _, e := range it.Entries {
				fmt.Fprintf(w, "put back: %s -> %s\n", filepath.Join(it.Kept, e), filepath.Join(it.LiveHost, e))
			}
		case it.Covered:
			fmt.Fprintf(w, "put back: %s -> %s (unless %s puts it back; then it stays kept)\n", it.Kept, it.LiveHost, u.cover(it).Live)
		default:
			fmt.Fprintf(w, "put back: %s -> %s\n", it.Kept, it.LiveHost)
		}
	}
	if u.target.live {
		fmt.Fprintf(w, "set aside: the journal %s -> %s\n", u.target.file, archivedJournal(u.target.j.Operation, u.target.j.RunID))
	}
}

// checkNotRunning refuses to touch a data dir an etcd is running on.
func checkNotRunning(dataDir string) error {
	return etcddata.CheckNotRunning(dataDir, "stop it first (move its static pod manifest out of the kubelet's manifests folder, or stop the kubelet), then undo")
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

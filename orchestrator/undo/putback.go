package undo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// putBackStep moves what the undone run kept back where it was.
func (u *undo) putBackStep() steps.Step {
	return steps.Step{
		Name: "put-back",
		Describe: func() string {
			var live []string
			for _, it := range u.putBackOrder() {
				live = append(live, it.LiveHost)
			}
			return fmt.Sprintf("put back what run %s kept (in %s) at %s",
				u.target.j.RunID, u.target.j.BackupDir(u.root.Path), strings.Join(live, ", "))
		},
		Check: func(context.Context) (steps.State, error) {
			if u.j.StepDone("put-back") {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			for _, it := range u.putBackOrder() {
				if err := u.putBack(it); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// putBackOrder puts folders back before what is inside them, and, at one
// depth, in the order the run kept them: the earliest copy of a path holds
// its state from before the run.
// Files the run created have nothing to put back.
func (u *undo) putBackOrder() []item {
	var list []item
	for _, it := range u.items {
		if !it.Created {
			list = append(list, it)
		}
	}
	sort.SliceStable(list, func(a, b int) bool {
		da, db := strings.Count(list[a].Live, "/"), strings.Count(list[b].Live, "/")
		if da != db {
			return da < db
		}
		return list[a].order < list[b].order
	})
	return list
}

// cover is the item whose Live holds it.
func (u *undo) cover(it item) item {
	for _, o := range u.putBackOrder() {
		if o.order != it.order && (o.Live == it.Live || inside(it.Live, o.Live)) {
			return o
		}
	}
	return it
}

func (u *undo) putBack(it item) error {
	if it.Contents {
		return u.putBackContents(it)
	}
	switch {
	case !exists(it.Kept) && exists(it.LiveHost):
		return nil // put back by an earlier attempt
	case !exists(it.Kept):
		return fmt.Errorf("%s is gone: it cannot be put back at %s", it.Kept, it.LiveHost)
	case exists(it.LiveHost) && it.Covered:
		fmt.Fprintf(u.out, "    %s is back with %s; %s stays kept\n", it.LiveHost, u.cover(it).Live, it.Kept)
		return nil
	case exists(it.LiveHost):
		return fmt.Errorf("%s exists, but the restored state was moved aside: something wrote it since; move it aside by hand and re-run", it.LiveHost)
	}
	if err := u.mkdirParent(it.LiveHost); err != nil {
		return err
	}
	if err := os.Rename(it.Kept, it.LiveHost); err != nil {
		return fmt.Errorf("put %s back at %s: %w", it.Kept, it.LiveHost, err)
	}
	fmt.Fprintf(u.out, "    moved %s -> %s\n", it.Kept, it.LiveHost)
	return atomicfile.SyncDir(filepath.Dir(it.LiveHost))
}

func (u *undo) putBackContents(it item) error {
	if err := checkNotRunning(it.LiveHost); err != nil {
		return err
	}
	if !exists(it.LiveHost) {
		// The run found no data dir; its folder was made by the run.
		if err := os.MkdirAll(it.LiveHost, 0o700); err != nil {
			return err
		}
	}
	for _, e := range it.Entries {
		from, to := filepath.Join(it.Kept, e), filepath.Join(it.LiveHost, e)
		switch {
		case !exists(from) && exists(to):
			continue // put back by an earlier attempt
		case !exists(from):
			return fmt.Errorf("%s is gone: it cannot be put back at %s", from, to)
		case exists(to):
			return fmt.Errorf("%s exists, but the restored state was moved aside: something wrote it since; move it aside by hand and re-run", to)
		}
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("put %s back at %s: %w", from, to, err)
		}
		fmt.Fprintf(u.out, "    moved %s -> %s\n", from, to)
	}
	if err := atomicfile.SyncDir(it.LiveHost); err != nil {
		return err
	}
	// A kept folder inside the data dir (one on a filesystem of its own)
	// is the run's, not old data: once empty it goes, so the data dir is
	// as it was.
	if filepath.Dir(it.Kept) == it.LiveHost && strings.HasPrefix(filepath.Base(it.Kept), keep.KeptPrefix) {
		if err := os.Remove(it.Kept); err == nil {
			return atomicfile.SyncDir(it.LiveHost)
		}
	}
	return nil
}

// mkdirParent creates p's missing parent folders inside the root.
func (u *undo) mkdirParent(p string) error {
	parent, err := u.root.Rel(filepath.Dir(p))
	if err != nil {
		return err
	}
	_, err = u.root.MkdirAll(parent, 0o755)
	return err
}

package undo

import (
	"context"
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// keepRestoredStateStep moves what the undone run left in place (the
// restored data dir's contents, the rewritten manifest, …) into this undo's
// backup folder, recording each move in this undo's journal: undoing this
// undo puts it back.
func (u *undo) keepRestoredStateStep() steps.Step {
	return steps.Step{
		Name: "keep-restored-state",
		Describe: func() string {
			var live []string
			for _, it := range u.items {
				if !it.Covered {
					live = append(live, it.LiveHost)
				}
			}
			return fmt.Sprintf("move what run %s left in place aside to %s: %s",
				u.target.j.RunID, u.j.BackupDir(u.root.Path), strings.Join(live, ", "))
		},
		Check: func(context.Context) (steps.State, error) {
			if u.j.StepDone("keep-restored-state") || u.j.Steps["put-back"].State != "" {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			for _, it := range u.items {
				if it.Covered {
					continue
				}
				if err := u.keepAside(it); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (u *undo) keepAside(it item) error {
	k := u.keeper()
	if it.Contents {
		if err := checkNotRunning(it.LiveHost); err != nil {
			return err
		}
		if len(keep.Entries(it.LiveHost)) == 0 {
			fmt.Fprintf(u.out, "    %s holds nothing to keep\n", it.LiveHost)
			return nil
		}
		_, err := k.MoveContents(it.LiveHost, rel(it.Live))
		return err
	}
	to := k.Backup(rel(it.Live))
	if !exists(it.LiveHost) {
		if r, ok := u.j.KeptAt(it.LiveHost); ok && exists(r.To) {
			return nil // moved by an earlier attempt
		}
		fmt.Fprintf(u.out, "    %s does not exist: nothing to keep\n", it.LiveHost)
		return nil
	}
	return k.Move(it.LiveHost, to)
}

package undo

import (
	"context"
	"fmt"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// setAsideJournalStep moves the undone run's journal, when it is still the
// operation's own, beside what that run kept (where journal.Begin archives
// a finished run's journal): a later restore then starts a run of its own
// instead of resuming, and finding done, the one undone. The move is kept
// in this undo's journal, so undoing this undo brings the journal back too.
func (u *undo) setAsideJournalStep() steps.Step {
	from := func() (string, error) { return u.root.ResolveParent(u.target.file) }
	to := func() (string, error) {
		return u.root.ResolveParent(archivedJournal(u.target.j.Operation, u.target.j.RunID))
	}
	return steps.Step{
		Name: "set-aside-journal",
		Describe: func() string {
			return fmt.Sprintf("move the journal of run %s, %s, aside to %s",
				u.target.j.RunID, u.target.file, archivedJournal(u.target.j.Operation, u.target.j.RunID))
		},
		Check: func(context.Context) (steps.State, error) {
			if !u.target.live {
				return steps.NotNeeded, nil
			}
			f, err := from()
			if err != nil {
				return steps.ToDo, err
			}
			if !exists(f) {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			f, err := from()
			if err != nil {
				return err
			}
			t, err := to()
			if err != nil {
				return err
			}
			return u.keeper().Move(f, t)
		},
	}
}

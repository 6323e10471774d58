// Package undo reverses a restore: it puts back the data dir, manifest,
// certificates and static pod resources that a restore run kept aside, and
// keeps the restored state aside in turn, in the undo run's own backup
// folder, with the files the run recorded as created (the signer the
// rescue image installs, new resource files). Nothing is deleted, so an
// undo is itself undone the same way, by its run ID.
//
// An undo is a list of steps like a restore: it checks every input first
// (the run's journal, every kept path, that no etcd runs on the data dir),
// holds the root's lock, journals each move before making it, and resumes
// after a crash at any point. --dry-run lists every move and changes nothing.
package undo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/lock"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// Options configure an undo.
type Options struct {
	// Root is the master's root: "/" on a live host, a mount point offline.
	Root string
	// Run is the run to undo: a restore run, or an undo run to undo that
	// undo. Empty means the run an unfinished undo was started on, else
	// the latest restore run.
	Run string
	// DryRun lists every move and changes nothing.
	DryRun bool
	// Out receives progress lines and the final marker.
	Out io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AfterStep is called after each step completes (tests stop runs there).
	AfterStep func(step string)
}

// Run undoes a run. It prints every step and ends with UNDO-OK,
// UNDO-DRY-RUN or UNDO-FAILED: reason.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	u, err := prepare(o)
	if err != nil {
		fmt.Fprintf(o.Out, "UNDO-FAILED: %v\n", oneLine(err))
		return err
	}
	defer u.lock.Release()
	return u.execute(ctx)
}

// undo is one run's state.
type undo struct {
	o      Options
	out    io.Writer
	root   *rootfs.Root
	lock   *lock.Lock
	j      *journal.Journal // this undo's journal
	target *target
	items  []item
}

func prepare(o Options) (*undo, error) {
	if o.Root == "" {
		o.Root = "/"
	}
	root, err := rootfs.Open(o.Root)
	if err != nil {
		return nil, err
	}
	l, err := lock.Acquire(root.Path)
	if err != nil {
		return nil, err
	}
	u := &undo{o: o, out: o.Out, root: root, lock: l}
	if err := u.begin(); err != nil {
		l.Release()
		return nil, err
	}
	return u, nil
}

// begin picks the run to undo and starts or resumes this undo's journal.
func (u *undo) begin() error {
	run := u.o.Run
	if run == "" {
		var err error
		if run, err = defaultRun(u.root); err != nil {
			return err
		}
		fmt.Fprintf(u.out, "undoing run %s (the latest restore; pass --run to pick another)\n", run)
	}
	if err := rootfs.CheckName(run); err != nil {
		return fmt.Errorf("--run %q: %v", run, err)
	}
	params := map[string]string{"run": run}
	// Everything is checked before journal.Begin may change the root (it
	// archives a finished undo's journal): a first look writes nothing.
	j, resumed, err := journal.Begin(u.root.Path, "undo", params, u.now(), true)
	if err != nil {
		return err
	}
	if err := u.load(j, run); err != nil {
		return err
	}
	if err := u.checkInputs(); err != nil {
		return err
	}
	if !u.o.DryRun {
		if j, resumed, err = journal.Begin(u.root.Path, "undo", params, u.now(), false); err != nil {
			return err
		}
		if err := u.load(j, run); err != nil {
			return err
		}
	}
	if resumed {
		fmt.Fprintf(u.out, "resuming undo run %s from %s\n", j.RunID, j.File())
	}
	return nil
}

// load takes this undo's journal and reads the run it undoes.
func (u *undo) load(j *journal.Journal, run string) error {
	if j.RunID == run {
		return fmt.Errorf("run %s is this undo itself", run)
	}
	u.j = j
	var err error
	if u.target, err = findRun(u.root, run); err != nil {
		return err
	}
	u.items, err = items(u.root, u.target)
	return err
}

func (u *undo) now() time.Time {
	if u.o.Now != nil {
		return u.o.Now()
	}
	return time.Now()
}

func (u *undo) keeper() *keep.Keeper {
	return &keep.Keeper{Root: u.root.Path, Journal: u.j, Out: u.out}
}

func (u *undo) execute(ctx context.Context) error {
	runner := &steps.Runner{Operation: "undo", Out: u.out, DryRun: u.o.DryRun, Journal: u.j, Now: u.o.Now, AfterStep: u.o.AfterStep}
	if u.o.DryRun {
		runner.Journal = nil
	}
	list := []steps.Step{u.checkInputsStep(), u.keepRestoredStateStep(), u.putBackStep(), u.setAsideJournalStep()}
	err := runner.Run(ctx, list, u.summary)
	if err == nil && !u.o.DryRun && u.j.Finished == nil {
		t := u.now().UTC()
		u.j.Finished = &t
		return u.j.Save()
	}
	return err
}

func (u *undo) summary() string {
	return fmt.Sprintf("undone=%s (%s) kept=%s", u.target.j.RunID, u.target.j.Operation, u.j.BackupDir(u.root.Path))
}

// rel is a path as the master sees it without its leading slash, as
// keep.Keeper takes it.
func rel(p string) string { return strings.TrimPrefix(p, "/") }

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// Package steps runs a recovery as an ordered list of named, idempotent
// steps. Each step first checks real state (done, to do, or unexpected) and
// only then acts, so the same list serves a first run, a resumed run after a
// crash, a no-op re-run and a dry run that changes nothing.
//
// The runner prints one parseable line per transition,
//
//	step 3/7 restore-snapshot: started: restore snapshot_… into /var/lib/etcd
//	step 3/7 restore-snapshot: done (2.1s)
//
// records each transition in the journal, and ends with one marker line:
// "<OP>-OK …" or "<OP>-FAILED: reason".
package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
)

// State is what a step's Check found.
type State int

const (
	// ToDo means the step must run.
	ToDo State = iota
	// Done means real state already matches what the step would produce.
	Done
	// NotNeeded means the step does not apply to this run (for example the
	// kubelet steps offline).
	NotNeeded
)

// Step is one named unit of recovery work.
type Step struct {
	// Name is short and stable: it keys the journal.
	Name string
	// Describe says what Run is about to do, in one line, with the concrete
	// paths, names and numbers. It is printed before Run and by a dry run.
	Describe func() string
	// Check reads real state. An error means the state is unexpected and the
	// run stops before changing anything in this step.
	Check func(ctx context.Context) (State, error)
	// Run does the work. It must be safe to call again after a crash at any
	// point inside it.
	Run func(ctx context.Context) error
	// ReadOnly steps change nothing, so a dry run runs them too (preflight
	// checks whose findings the plan shows).
	ReadOnly bool
}

// Runner runs a list of steps.
type Runner struct {
	// Operation names the run in the marker line: "RESTORE" gives RESTORE-OK.
	Operation string
	// Out receives the progress lines and the marker.
	Out io.Writer
	// DryRun runs only checks and read-only steps and prints the plan.
	DryRun bool
	// Journal records step transitions; nil in a dry run.
	Journal *journal.Journal
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AfterStep, when set, is called after each step is recorded done. Tests
	// use it to stop a run at every step boundary.
	AfterStep func(name string)
}

// Run runs the steps in order and prints the marker line. summary, called
// only on success, gives the marker's details (for example the new cluster ID).
func (r *Runner) Run(ctx context.Context, list []Step, summary func() string) error {
	err := r.run(ctx, list)
	op := strings.ToUpper(r.Operation)
	switch {
	case err != nil:
		fmt.Fprintf(r.Out, "%s-FAILED: %v\n", op, oneLine(err))
	case r.DryRun:
		fmt.Fprintf(r.Out, "%s-DRY-RUN: plan above; nothing was changed\n", op)
	default:
		s := ""
		if summary != nil {
			s = " " + summary()
		}
		fmt.Fprintf(r.Out, "%s-OK%s\n", op, s)
	}
	return err
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) run(ctx context.Context, list []Step) error {
	n := len(list)
	pending := false // a dry run has listed a step that would change state
	for i, s := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		pos := fmt.Sprintf("step %d/%d %s", i+1, n, s.Name)
		if pending && !s.ReadOnly {
			// A dry run cannot check a step against state an earlier
			// step would have changed: it says what the step would do.
			fmt.Fprintf(r.Out, "%s: would run: %s\n", pos, describe(s))
			continue
		}
		state, err := s.Check(ctx)
		if err != nil {
			fmt.Fprintf(r.Out, "%s: failed: %v\n", pos, err)
			r.record(s.Name, "failed", err)
			return fmt.Errorf("step %s: %w", s.Name, err)
		}
		switch state {
		case Done:
			fmt.Fprintf(r.Out, "%s: skipped: already done\n", pos)
			if err := r.record(s.Name, "done", nil); err != nil {
				return err
			}
			continue
		case NotNeeded:
			fmt.Fprintf(r.Out, "%s: skipped: not needed\n", pos)
			continue
		}
		what := describe(s)
		if r.DryRun && !s.ReadOnly {
			fmt.Fprintf(r.Out, "%s: would run: %s\n", pos, what)
			pending = true
			continue
		}
		fmt.Fprintf(r.Out, "%s: started: %s\n", pos, what)
		journaled := !s.ReadOnly // checks that change nothing leave no trace
		if journaled {
			if err := r.record(s.Name, "started", nil); err != nil {
				return err
			}
		}
		start := r.now()
		if err := s.Run(ctx); err != nil {
			fmt.Fprintf(r.Out, "%s: failed: %v\n", pos, err)
			if journaled {
				r.record(s.Name, "failed", err)
			}
			return fmt.Errorf("step %s: %w", s.Name, err)
		}
		if journaled {
			if err := r.record(s.Name, "done", nil); err != nil {
				return err
			}
		}
		fmt.Fprintf(r.Out, "%s: done (%s)\n", pos, r.now().Sub(start).Round(time.Millisecond))
		if r.AfterStep != nil {
			r.AfterStep(s.Name)
		}
	}
	return nil
}

func (r *Runner) record(name, state string, err error) error {
	if r.Journal == nil || r.DryRun {
		return nil
	}
	if err == nil && r.Journal.Steps[name].State == state {
		return nil // a re-run that finds the step done writes nothing
	}
	if jerr := r.Journal.SetStep(name, state, err); jerr != nil {
		return errors.Join(err, fmt.Errorf("write journal %s: %w", r.Journal.File(), jerr))
	}
	return nil
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func describe(s Step) string {
	if s.Describe == nil {
		return s.Name
	}
	return s.Describe()
}

// Indent returns a writer that puts each line it is given under a step's
// progress line, indented by four spaces: what a step prints about its
// work (a report, a table, the lines of a command it runs).
func Indent(w io.Writer) io.Writer { return &indenter{w: w, start: true} }

type indenter struct {
	w     io.Writer
	start bool // the next byte begins a line
}

func (i *indenter) Write(p []byte) (int, error) {
	var b strings.Builder
	for _, c := range string(p) {
		if i.start {
			b.WriteString("    ")
			i.start = false
		}
		b.WriteRune(c)
		if c == '\n' {
			i.start = true
		}
	}
	if _, err := io.WriteString(i.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

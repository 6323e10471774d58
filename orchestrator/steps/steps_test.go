package steps

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
)

// fakeStep is a step over a bool that Run sets: Check reads it back.
func fakeStep(name string, done *bool, runs *int, readOnly bool) Step {
	return Step{
		Name:     name,
		ReadOnly: readOnly,
		Describe: func() string { return "do " + name },
		Check: func(context.Context) (State, error) {
			if *done {
				return Done, nil
			}
			return ToDo, nil
		},
		Run: func(context.Context) error { *runs++; *done = true; return nil },
	}
}

func TestRunnerRunsChecksAndSkips(t *testing.T) {
	root := t.TempDir()
	j, err := journal.Open(root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var a, b bool
	var ra, rb int
	list := []Step{fakeStep("a", &a, &ra, false), fakeStep("b", &b, &rb, false)}
	var out bytes.Buffer
	r := &Runner{Operation: "restore", Out: &out, Journal: j}
	if err := r.Run(context.Background(), list, func() string { return "x=1" }); err != nil {
		t.Fatal(err)
	}
	want := []string{"step 1/2 a: started: do a", "step 1/2 a: done", "step 2/2 b: started: do b", "RESTORE-OK x=1"}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	if err := r.Run(context.Background(), list, nil); err != nil {
		t.Fatal(err)
	}
	if ra != 1 || rb != 1 || strings.Count(out.String(), "skipped: already done") != 2 {
		t.Fatalf("second run ran steps again (%d, %d):\n%s", ra, rb, out.String())
	}
	j2, _ := journal.Open(root, "restore", time.Now())
	if !j2.StepDone("a") || !j2.StepDone("b") {
		t.Fatalf("journal does not record the steps: %+v", j2.Steps)
	}
}

func TestDryRunRunsOnlyReadOnlyStepsAndChecks(t *testing.T) {
	var v, a, b bool
	var rv, ra, rb int
	checked := 0
	after := fakeStep("b", &b, &rb, false)
	check := after.Check
	after.Check = func(ctx context.Context) (State, error) { checked++; return check(ctx) }
	list := []Step{fakeStep("verify", &v, &rv, true), fakeStep("a", &a, &ra, false), after}
	var out bytes.Buffer
	r := &Runner{Operation: "restore", Out: &out, DryRun: true}
	if err := r.Run(context.Background(), list, nil); err != nil {
		t.Fatal(err)
	}
	if rv != 1 || ra != 0 || rb != 0 {
		t.Fatalf("dry run ran verify %d, a %d, b %d times; want 1, 0, 0", rv, ra, rb)
	}
	if checked != 0 {
		t.Error("a step after one that would change state was checked against state that is about to change")
	}
	for _, w := range []string{"step 2/3 a: would run: do a", "step 3/3 b: would run: do b", "RESTORE-DRY-RUN"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

func TestFailureEndsWithMarker(t *testing.T) {
	list := []Step{{
		Name:  "boom",
		Check: func(context.Context) (State, error) { return ToDo, nil },
		Run:   func(context.Context) error { return errors.New("disk on fire\nsecond line") },
	}}
	var out bytes.Buffer
	err := (&Runner{Operation: "join", Out: &out}).Run(context.Background(), list, nil)
	if err == nil || !strings.Contains(out.String(), "step 1/1 boom: failed: disk on fire") ||
		!strings.Contains(out.String(), "JOIN-FAILED: step boom: disk on fire; second line\n") {
		t.Fatalf("err %v, output:\n%s", err, out.String())
	}
}

func TestIndentPutsEveryLineUnderTheStep(t *testing.T) {
	var b strings.Builder
	w := Indent(&b)
	for _, part := range []string{"size  1", "0 bytes\nhash", " ab\n\nend\n"} {
		if _, err := io.WriteString(w, part); err != nil {
			t.Fatal(err)
		}
	}
	if want := "    size  10 bytes\n    hash ab\n    \n    end\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

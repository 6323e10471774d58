package main

import (
	"errors"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
)

// randomKills kills a command at random moments of its run, runs it again
// to the end each time and expects the same final state as a run that was
// never interrupted.
type randomKills struct {
	trials int
	// span is how long a whole run took (a reference run); kill times are
	// drawn below it.
	span time.Duration
	// start is the run to kill, on a fresh copy of the scene.
	start func(s *disaster.Scene) *exec.Cmd
	// finish runs it again to the end; its output must hold marker.
	finish func(s *disaster.Scene) (string, error)
	marker string
	// state describes the scene after the run; it must equal want.
	state func(s *disaster.Scene) string
	want  string
}

// run does the trials on copies of staged and returns how many runs were
// killed before they ended, and the span the kill times were last drawn from.
func (k randomKills) run(t *testing.T, staged *disaster.Scene) (killed int, span time.Duration) {
	t.Helper()
	span = k.span
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < k.trials; i++ {
		s := staged.Copy(t)
		delay := time.Duration(rng.Int63n(int64(span)))
		cmd := k.start(s)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		time.AfterFunc(delay, func() { cmd.Process.Kill() })
		if err := cmd.Wait(); err != nil {
			killed++
		} else if took := time.Since(began); took < span {
			// The reference run paid for cold caches (or a busy
			// machine): draw later kill times from what a whole run
			// takes now, so they still land inside it.
			span = took
		}
		out, err := k.finish(s)
		if err != nil || !strings.Contains(out, k.marker) {
			t.Fatalf("trial %d (killed after %s): re-run: %v\n%s", i, delay, err, out)
		}
		if got := k.state(s); got != k.want {
			t.Fatalf("trial %d (killed after %s): result differs:\n got %s\nwant %s", i, delay, got, k.want)
		}
	}
	return killed, span
}

// killAfterStep runs a command on s with crashAfterStepEnv set to step (it
// must die by SIGKILL after that step), runs it again to the end (its
// output must hold marker) and returns the second run's output.
func killAfterStep(t *testing.T, s *disaster.Scene, step, marker string, run func(*testing.T, *disaster.Scene, ...string) (string, error)) string {
	t.Helper()
	out, err := run(t, s, crashAfterStepEnv+"="+step)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("not killed after %s: %v\n%s", step, err, out)
	}
	out, err = run(t, s)
	if err != nil || !strings.Contains(out, marker) {
		t.Fatalf("re-run after a crash after %s: %v\n%s", step, err, out)
	}
	return out
}

// referenceRestore runs a restore to the end on a copy of staged and
// returns its outcome, which must say the old data dir was kept as it was:
// what every interrupted and resumed restore of staged must end in.
func referenceRestore(t *testing.T, staged *disaster.Scene, run func(*testing.T, *disaster.Scene, ...string) (string, error), outcome func(*testing.T, *disaster.Scene) string) string {
	t.Helper()
	oldData := disaster.TreeHash(t, filepath.Join(staged.Root, staged.Profile.DataDir))
	ref := staged.Copy(t)
	if out, err := run(t, ref); err != nil || !strings.Contains(out, "RESTORE-OK") {
		t.Fatalf("reference restore: %v\n%s", err, out)
	}
	want := outcome(t, ref)
	if !strings.Contains(want, "kept="+oldData) {
		t.Fatalf("reference restore did not keep the old data dir intact")
	}
	return want
}

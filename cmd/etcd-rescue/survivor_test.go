package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

func survivorRestoreCmd(s *disaster.Scene) *exec.Cmd {
	return exec.Command(binary, "restore", "--root", s.Root, "--from-data-dir",
		"--name", s.Master.MemberName, "--initial-cluster", s.InitialCluster(), "--initial-cluster-token", "crash-test")
}

func runSurvivorRestore(t *testing.T, s *disaster.Scene, env ...string) (string, error) {
	t.Helper()
	cmd := survivorRestoreCmd(s)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// survivorOutcome is outcome, and no copy of the survivor's data dir left
// in the run's work folder.
func survivorOutcome(t *testing.T, s *disaster.Scene) string {
	t.Helper()
	j, err := journal.Open(s.Root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(s.Root, journal.Dir, "work", j.RunID, "survivor-copy")); len(left) > 0 {
		t.Errorf("leftover copy of the survivor's data dir: %v", left)
	}
	return outcome(t, s)
}

// TestSurvivorRestoreResumesAfterSIGKILLAtEveryStep kills a restore from
// the survivor's own data with SIGKILL after each step, runs it again, and
// expects the result of an uninterrupted one, with the old data dir kept
// byte for byte and every key written (after the backup too) served.
func TestSurvivorRestoreResumesAfterSIGKILLAtEveryStep(t *testing.T) {
	staged := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 2000, Lost: 100})
	want := referenceRestore(t, staged, runSurvivorRestore, survivorOutcome)
	for _, step := range []string{"verify-survivor-data", "preflight", "keep-old-state", "restore-survivor-data", "rewrite-manifest"} {
		t.Run(step, func(t *testing.T) {
			s := staged.Copy(t)
			out := killAfterStep(t, s, step, "RESTORE-OK", runSurvivorRestore)
			if got := survivorOutcome(t, s); got != want {
				t.Fatalf("after a crash after %s the result differs:\n got %s\nwant %s\n%s", step, got, want, out)
			}
			if step == "restore-survivor-data" {
				etcdtest.CheckKeys(t, s.StartFromManifest(t, s.Root), 0, s.Keys+s.Lost)
			}
		})
	}
}

// TestSurvivorRestoreConvergesAfterSIGKILLAtRandomPoints kills the restore
// at random moments, inside the copy and the replay too, re-runs it, and
// expects the result of an uninterrupted restore every time.
func TestSurvivorRestoreConvergesAfterSIGKILLAtRandomPoints(t *testing.T) {
	staged := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 2000, Lost: 100})
	ref := staged.Copy(t)
	start := time.Now()
	if out, err := runSurvivorRestore(t, ref); err != nil || !strings.Contains(out, "RESTORE-OK") {
		t.Fatalf("reference restore: %v\n%s", err, out)
	}
	const trials = 20
	killed, span := randomKills{
		trials: trials, span: time.Since(start), want: survivorOutcome(t, ref), marker: "RESTORE-OK",
		start:  survivorRestoreCmd,
		finish: func(s *disaster.Scene) (string, error) { return runSurvivorRestore(t, s) },
		state:  func(s *disaster.Scene) string { return survivorOutcome(t, s) },
	}.run(t, staged)
	t.Logf("%d trials over a %s restore, %d killed before the end: all converged", trials, span.Round(time.Millisecond), killed)
	if killed < trials/2 {
		t.Errorf("only %d of %d runs were killed before they ended: the trials did not test crashes", killed, trials)
	}
}

// TestFromDataDirTakesAPathEitherWay: --from-data-dir=PATH and
// --from-data-dir PATH both restore from PATH (a dry run says so), and a
// bare --from-data-dir from the data dir the manifest names.
func TestFromDataDirTakesAPathEitherWay(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 10, Lost: 1})
	other := filepath.Join(t.TempDir(), "etcd")
	if out, err := exec.Command("cp", "-a", filepath.Join(s.Root, s.Profile.DataDir), other).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, c := range []struct {
		flags []string
		dir   string
	}{
		{[]string{"--from-data-dir=" + other}, other},
		{[]string{"--from-data-dir", other}, other},
		{[]string{"--from-data-dir"}, filepath.Join(s.Root, s.Profile.DataDir)},
	} {
		args := append([]string{"restore", "--root", s.Root, "--dry-run", "--name", s.Master.MemberName, "--initial-cluster", s.InitialCluster()}, c.flags...)
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "survey the survivor's data dir "+c.dir+" (read-only)") {
			t.Errorf("%v: err %v, want a survey of %s:\n%s", c.flags, err, c.dir, out)
		}
	}
}

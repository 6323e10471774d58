package main

import (
	"archive/tar"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

func runUndoCmd(t *testing.T, s *disaster.Scene, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, "undo", "--root", s.Root)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// undoneState hashes what an undo puts back, the static pod resources
// (and so the files the restore created there) included.
func undoneState(t *testing.T, s *disaster.Scene) string {
	t.Helper()
	var parts []string
	for _, rel := range []string{s.Profile.DataDir, s.Profile.Manifest, s.Profile.EnvFile, s.Profile.CertDir, s.Profile.ResourcesBase} {
		if rel != "" {
			parts = append(parts, rel+"="+disaster.TreeHash(t, filepath.Join(s.Root, rel)))
		}
	}
	return strings.Join(parts, "\n")
}

// TestUndoResumesAfterSIGKILLAtEveryStep restores with the binary, then
// kills `etcd-rescue undo` with SIGKILL after each step, runs it again, and
// expects the state from before the restore, byte for byte.
func TestUndoResumesAfterSIGKILLAtEveryStep(t *testing.T) {
	staged := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 2000, Lost: 100})
	dropResource(t, staged)
	want := undoneState(t, staged)
	if out, err := runRestore(t, staged); err != nil || !strings.Contains(out, "RESTORE-OK") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if undoneState(t, staged) == want {
		t.Fatal("the restore changed nothing: the test would prove nothing")
	}
	if j, err := journal.Open(staged.Root, "restore", time.Now()); err != nil || len(j.Created) == 0 {
		t.Fatalf("the restore recorded no created file (%v): the test would not cover their moves", err)
	}
	t.Run("restore --undo RUN", func(t *testing.T) {
		s := staged.Copy(t)
		j, err := journal.Open(s.Root, "restore", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		before := disaster.TreeHash(t, s.Root)
		out, err := exec.Command(binary, "restore", "--root", s.Root, "--undo", "--dry-run").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "UNDO-DRY-RUN") || disaster.TreeHash(t, s.Root) != before {
			t.Fatalf("restore --undo --dry-run: %v\n%s", err, out)
		}
		out, err = exec.Command(binary, "restore", "--root", s.Root, "--undo", j.RunID).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "UNDO-OK undone="+j.RunID) {
			t.Fatalf("restore --undo %s: %v\n%s", j.RunID, err, out)
		}
		if got := undoneState(t, s); got != want {
			t.Fatalf("restore --undo left another state than before the restore:\n%s", out)
		}
	})
	for _, step := range []string{"check-inputs", "keep-restored-state", "put-back", "set-aside-journal"} {
		t.Run(step, func(t *testing.T) {
			s := staged.Copy(t)
			out := killAfterStep(t, s, step, "UNDO-OK", runUndoCmd)
			if got := undoneState(t, s); got != want {
				t.Fatalf("after a crash after %s the state differs from before the restore:\n got %s\nwant %s\n%s", step, got, want, out)
			}
		})
	}
}

// TestUndoConvergesAfterSIGKILLAtRandomPoints kills the undo at 30 random
// moments (inside steps too), runs it again, and expects the state from
// before the restore every time.
func TestUndoConvergesAfterSIGKILLAtRandomPoints(t *testing.T) {
	staged := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 2000, Lost: 100})
	dropResource(t, staged)
	want := undoneState(t, staged)
	if out, err := runRestore(t, staged); err != nil || !strings.Contains(out, "RESTORE-OK") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	ref := staged.Copy(t)
	start := time.Now()
	if out, err := runUndoCmd(t, ref); err != nil || !strings.Contains(out, "UNDO-OK") {
		t.Fatalf("reference undo: %v\n%s", err, out)
	}
	killed, span := randomKills{
		trials: 30, span: time.Since(start), want: want, marker: "UNDO-OK",
		start:  func(s *disaster.Scene) *exec.Cmd { return exec.Command(binary, "undo", "--root", s.Root) },
		finish: func(s *disaster.Scene) (string, error) { return runUndoCmd(t, s) },
		state:  func(s *disaster.Scene) string { return undoneState(t, s) },
	}.run(t, staged)
	t.Logf("30 trials over a %s undo, %d killed before the end: all converged", span.Round(time.Millisecond), killed)
	if killed < 15 {
		t.Errorf("only %d of 30 runs were killed before they ended: the trials did not test crashes", killed)
	}
}

// dropResource removes from the master a static pod resource file the
// backup holds, outside the certificate folder, so that the restore
// creates it (no file to keep aside) and the undo must move it aside.
func dropResource(t *testing.T, s *disaster.Scene) {
	t.Helper()
	f, err := os.Open(s.Backup.Resources)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("the backup holds no resource file outside %s to drop: %v", s.Profile.CertDir, err)
		}
		rel := filepath.Join(s.Profile.ResourcesBase, filepath.Clean("/"+h.Name))
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(rel, s.Profile.CertDir+"/") {
			continue
		}
		if err := os.Remove(filepath.Join(s.Root, rel)); err != nil {
			t.Fatalf("drop %s from the master: %v", rel, err)
		}
		return
	}
}

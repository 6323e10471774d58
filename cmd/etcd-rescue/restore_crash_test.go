package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

func runRestore(t *testing.T, s *disaster.Scene, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, "restore", "--root", s.Root, "--backup", s.BackupDir,
		"--name", s.Master.MemberName, "--initial-cluster", s.InitialCluster(),
		"--initial-cluster-token", "crash-test")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// outcome fingerprints what a restore leaves: the rewritten manifest and
// environment file, the restored backend's revision and members, and the
// kept old data dir.
func outcome(t *testing.T, s *disaster.Scene) string {
	t.Helper()
	var parts []string
	for _, rel := range []string{s.Profile.Manifest, s.Profile.EnvFile} {
		if rel == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Root, rel))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		parts = append(parts, rel+"="+hex.EncodeToString(sum[:8]))
	}
	info, err := etcddata.Read(etcddata.DBPath(filepath.Join(s.Root, s.Profile.DataDir)))
	if err != nil {
		t.Fatal(err)
	}
	parts = append(parts, fmt.Sprintf("revision=%d members=%v", info.Revision, info.Members))
	j, err := journal.Open(s.Root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	parts = append(parts, "kept="+disaster.TreeHash(t, j.Notes["keptDataDir"]))
	for _, leftover := range []string{".etcd-rescue-restore-" + j.RunID} {
		if _, err := os.Stat(filepath.Join(s.Root, s.Profile.DataDir, leftover)); err == nil {
			t.Errorf("leftover %s in the data dir", leftover)
		}
	}
	return strings.Join(parts, "\n")
}

// TestRestoreResumesAfterSIGKILLAtEveryStep kills the restore with SIGKILL
// after each step, runs it again, and expects the same result as an
// uninterrupted restore, with the old data dir intact.
func TestRestoreResumesAfterSIGKILLAtEveryStep(t *testing.T) {
	staged := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 2000, Lost: 100})
	want := referenceRestore(t, staged, runRestore, outcome)

	steps := []string{"verify-backup", "preflight", "keep-old-state", "restore-snapshot", "restore-static-resources", "rewrite-manifest"}
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			s := staged.Copy(t)
			if step == "restore-static-resources" {
				// make the step do work: the survivor lost a resource file
				os.RemoveAll(filepath.Join(s.Root, "etc/kubernetes/static-pod-resources/kube-apiserver-pod-7/configmaps"))
			}
			out := killAfterStep(t, s, step, "RESTORE-OK", runRestore)
			if got := outcome(t, s); got != want {
				t.Fatalf("after a crash after %s the result differs:\n got %s\nwant %s\n%s", step, got, want, out)
			}
			if i == 3 { // once: the resumed result really serves
				startAndCheck(t, s)
			}
		})
	}
}

// startAndCheck starts etcd as the restored manifest says and reads every
// key written before the backup.
func startAndCheck(t *testing.T, s *disaster.Scene) {
	t.Helper()
	etcdtest.CheckKeys(t, s.StartFromManifest(t, s.Root), 0, s.Keys)
}

// TestRestoreConvergesAfterSIGKILLAtRandomPoints kills the restore at 50
// random moments (inside steps, not only between them), re-runs it, and
// expects the result of an uninterrupted restore every time.
func TestRestoreConvergesAfterSIGKILLAtRandomPoints(t *testing.T) {
	staged := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 2000, Lost: 100})
	ref := staged.Copy(t)
	start := time.Now()
	if out, err := runRestore(t, ref); err != nil || !strings.Contains(out, "RESTORE-OK") {
		t.Fatalf("reference restore: %v\n%s", err, out)
	}
	span := time.Since(start)
	want := outcome(t, ref)
	killed, span := randomKills{
		trials: 50, span: span, want: want, marker: "RESTORE-OK",
		start: func(s *disaster.Scene) *exec.Cmd {
			return exec.Command(binary, "restore", "--root", s.Root, "--backup", s.BackupDir,
				"--name", s.Master.MemberName, "--initial-cluster", s.InitialCluster(), "--initial-cluster-token", "crash-test")
		},
		finish: func(s *disaster.Scene) (string, error) { return runRestore(t, s) },
		state:  func(s *disaster.Scene) string { return outcome(t, s) },
	}.run(t, staged)
	t.Logf("50 trials over a %s restore, %d killed before the end: all converged", span.Round(time.Millisecond), killed)
	if killed < 25 {
		t.Errorf("only %d of 50 runs were killed before they ended: the trials did not test crashes", killed)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// TestSurveyCommand surveys a kubeadm master's data dir (found by --root
// and --profile) against a backup taken before the last 30 writes.
func TestSurveyCommand(t *testing.T) {
	p := etcdtest.NewPKI(t)
	root := t.TempDir()
	spec := etcdtest.MemberSpec{Name: "master-0", DataDir: filepath.Join(root, "var/lib/etcd"),
		PeerURL: etcdtest.FreeURL(t), ClientURL: etcdtest.FreeURL(t), State: "new"}
	spec.InitialCluster = spec.Name + "=" + spec.PeerURL
	m := p.Start(t, spec)
	cli := p.Client(t, spec.ClientURL)
	etcdtest.PutKeys(t, cli, 0, 50)
	backupFile := filepath.Join(t.TempDir(), "snapshot_2026-11-27_101500.db")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), etcdtest.ClientConfig(t, p, spec.ClientURL), backupFile); err != nil {
		t.Fatal(err)
	}
	etcdtest.PutKeys(t, cli, 50, 80)
	m.Stop()

	run := func(args ...string) (stdout, stderr string) {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), progress.EveryEnv+"=1ms")
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		t.Logf("$ etcd-rescue %s\n%s%s", strings.Join(args, " "), errb.String(), out.String())
		if err != nil {
			t.Fatalf("etcd-rescue survey: %v", err)
		}
		return out.String(), errb.String()
	}

	out, log := run("survey", "--json", "--root", root, "--profile", "kubeadm", "--backup", backupFile)
	var r survey.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json prints no JSON report: %v", err)
	}
	if r.RecommendedPath != spec.DataDir || r.PlanSource != "survivor-data" || len(r.Sources) != 2 {
		t.Fatalf("recommended %s (%s) of %d sources, want %s (survivor-data) of 2", r.RecommendedPath, r.PlanSource, len(r.Sources), spec.DataDir)
	}
	if b := r.Sources[1]; b.Kind != survey.Backup || b.LostRevisions != 30 || !b.LostExact {
		t.Errorf("backup %+v: want it to lose exactly the 30 revisions written after it", b)
	}
	for _, want := range []string{"reading backend", "reading WAL", "verifying"} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr does not say %q", want)
		}
	}
	walMeter, verifyMeter := "  read WAL "+filepath.Join(spec.DataDir, "member", "wal")+": ", "  verify "+filepath.Base(backupFile)+": "
	if strings.Contains(log, walMeter) || strings.Contains(log, verifyMeter) {
		t.Errorf("with --json stderr shows progress")
	}

	table, log := run("survey", "--data-dir", spec.DataDir, "--backup", backupFile)
	for _, want := range []string{walMeter, verifyMeter} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `\d+\.\d [KM]iB in \S+ \(`).MatchString(log) {
			t.Errorf("stderr has no summary %q…", want)
		}
	}
	for _, want := range []string{"| RANK ", "| master-0 ", "| recommended ", "Recommended: " + spec.DataDir + " (restore source: survivor-data)"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
}

package survey_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// TestSurveyFlags surveys sources that must not be compared with the
// survivors: data dirs and a backup of another cluster (with more writes
// than ours), a data dir etcd still runs on, and paths that are not
// sources at all.
func TestSurveyFlags(t *testing.T) {
	ours := etcdtest.StartCluster(t, 2)
	etcdtest.PutKeys(t, ours.Client(t), 0, 50)
	other := etcdtest.StartCluster(t, 1)
	etcdtest.PutKeys(t, other.Client(t), 0, 80)
	otherBackup := filepath.Join(t.TempDir(), "snapshot_2026-11-27_090000.db")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), etcdtest.ClientConfig(t, other.PKI, other.Endpoints()...), otherBackup); err != nil {
		t.Fatal(err)
	}
	running := etcdtest.StartCluster(t, 1)
	for _, m := range append(ours.Members, other.Members...) {
		m.Stop()
	}
	ourDirs := []string{ours.Members[0].Spec.DataDir, ours.Members[1].Spec.DataDir}
	otherDir := other.Members[0].Spec.DataDir
	runningDir := running.Members[0].Spec.DataDir
	missing := filepath.Join(t.TempDir(), "no-such-data-dir")
	notBackup := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notBackup, []byte("not a snapshot\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r, err := survey.Run(survey.Options{
		DataDirs: []string{otherDir, runningDir, ourDirs[0], missing, ourDirs[1]},
		Backups:  []string{otherBackup, notBackup},
	})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]*survey.Source{}
	for _, s := range r.Sources {
		by[s.Path] = s
		t.Logf("%d %s %s: error %q, other cluster %q", s.Rank, s.Kind, s.Path, s.Error, s.OtherCluster)
	}
	if r.Sources[0].Path != ourDirs[0] && r.Sources[0].Path != ourDirs[1] || !r.Sources[0].Recommended || by[ourDirs[0]].Rank+by[ourDirs[1]].Rank != 3 {
		t.Errorf("our cluster's data dirs should rank 1 and 2 (two survivors agree on it), recommended %s", r.RecommendedPath)
	}
	for _, p := range []string{otherDir, otherBackup} {
		if s := by[p]; s.OtherCluster == "" || !s.Usable() || s.Rank < 3 || s.Rank > 4 || s.LostRevisions != 0 {
			t.Errorf("%s: rank %d, other cluster %q, loses %d: want it flagged, after ours, with no loss counted", p, s.Rank, s.OtherCluster, s.LostRevisions)
		}
	}
	for p, want := range map[string]string{runningDir: "etcd still runs", missing: "no such file or directory", notBackup: "not a backup file"} {
		if s := by[p]; s.Usable() || !strings.Contains(s.Error, want) || s.Rank < 5 {
			t.Errorf("%s: rank %d, error %q: want it ranked last, saying %q", p, s.Rank, s.Error, want)
		}
	}
}

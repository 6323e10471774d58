package roles

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// verifyEnv is the verify role's environment on a staged master: its root
// and backup folder as the boot would mount them, and a backup volume that
// takes new files (or refuses them with refuse, when not nil).
func verifyEnv(t *testing.T, s *disaster.Scene, out *bytes.Buffer, refuse error) *boot.Env {
	t.Helper()
	m := plan.Member{Name: "master-0", Host: s.Master.NodeName, PeerURL: s.Master.PeerURL()}
	p := &plan.Plan{Version: plan.Version, Cluster: plan.Cluster{Name: "t", Domain: "test.example.com"},
		Profile: s.Profile.Name, Survivor: m.Name, Members: []plan.Member{m}}
	return &boot.Env{Plan: p, Role: ignition.Role{Role: ignition.RoleVerify, Member: m.Name}, Member: m,
		Root: s.Root, Backup: s.BackupDir, Console: out,
		WriteBesideBackup: func(name string, data []byte) (string, error) {
			if refuse != nil {
				return "", refuse
			}
			p := filepath.Join(s.BackupDir, name)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return "", err
			}
			defer f.Close()
			_, err = f.Write(data)
			return p, err
		}}
}

var surveyLine = regexp.MustCompile(`(?m)^` + SurveyJSONPrefix + `(\{.*\})\r?$`)

// consoleSurvey parses the one SURVEY-JSON line of a console.
func consoleSurvey(t *testing.T, console string) *survey.Report {
	t.Helper()
	m := surveyLine.FindAllStringSubmatch(console, -1)
	if len(m) != 1 {
		t.Fatalf("%d SURVEY-JSON lines on the console, want 1:\n%s", len(m), console)
	}
	var r survey.Report
	if err := json.Unmarshal([]byte(m[0][1]), &r); err != nil {
		t.Fatalf("SURVEY-JSON line does not parse: %v\n%s", err, m[0][1])
	}
	return &r
}

// TestVerifyRoleSurvey runs the verify role on a master whose data dir
// holds writes made after its backup: the console ranks the data dir
// first and says the backup loses those writes, the same report is
// written beside the backup, and nothing else changes. A damaged backend
// is a row of the survey, not a failure of verify; a read-only backup
// volume, or a write that fails, leaves the survey on the console only.
func TestVerifyRoleSurvey(t *testing.T) {
	staged := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 100, Lost: 10})
	run := func(t *testing.T, s *disaster.Scene, refuse error) (string, *survey.Report) {
		t.Helper()
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := Verify(ctx, verifyEnv(t, s, &out, refuse)); err != nil {
			t.Fatalf("verify role: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "VERIFY-OK snapshot_") {
			t.Fatalf("no VERIFY-OK:\n%s", out.String())
		}
		return out.String(), consoleSurvey(t, out.String())
	}
	surveyFiles := func(t *testing.T, dir string) []string {
		t.Helper()
		m, err := filepath.Glob(filepath.Join(dir, "survey-master-0-*.json"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("stale-backup", func(t *testing.T) {
		s := staged.Copy(t)
		root := disaster.Snap(t, s.Root)
		backupBefore := disaster.Snap(t, s.BackupDir)
		console, r := run(t, s, nil)
		t.Logf("console:\n%s", console)
		if len(r.Sources) != 2 || r.PlanSource != "survivor-data" || r.RecommendedPath != "/"+s.Profile.DataDir {
			t.Fatalf("recommended %s (%s) of %d sources, want /%s (survivor-data) of 2:\n%s", r.RecommendedPath, r.PlanSource, len(r.Sources), s.Profile.DataDir, console)
		}
		if d := r.Sources[0]; d.WAL == nil || d.WAL.Dir != "/"+s.Profile.DataDir+"/member/wal" || d.Backend == nil || d.Backend.Path != "/"+s.Profile.DataDir+"/member/snap/db" {
			t.Errorf("data dir row: WAL %+v, backend %+v: want them as the master sees them", d.WAL, d.Backend)
		}
		if b := r.Sources[1]; b.Kind != survey.Backup || b.Rank != 2 || b.LostRevisions != int64(s.Lost) || !b.LostExact {
			t.Errorf("backup ranked %d, losing %d revisions (exact %v): want rank 2, exactly the %d written after it", b.Rank, b.LostRevisions, b.LostExact, s.Lost)
		}
		for _, want := range []string{"| RANK ", "| recommended ", "data dir: /" + s.Profile.DataDir + " (the manifest's --data-dir"} {
			if !strings.Contains(console, want) {
				t.Errorf("the console lacks %q", want)
			}
		}
		files := surveyFiles(t, s.BackupDir)
		if len(files) != 1 {
			t.Fatalf("%d survey files beside the backup, want 1", len(files))
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		var saved survey.Report
		if err := json.Unmarshal(b, &saved); err != nil {
			t.Fatalf("%s does not parse: %v", files[0], err)
		}
		if saved.RecommendedPath != r.RecommendedPath || len(saved.Sources) != len(r.Sources) {
			t.Errorf("the file says %s of %d sources, the console %s of %d", saved.RecommendedPath, len(saved.Sources), r.RecommendedPath, len(r.Sources))
		}
		if c := root.Changes(t); len(c) > 0 {
			t.Errorf("verify changed the master's root: %v", c)
		}
		c := backupBefore.Changes(t)
		if len(c) != 1 || !strings.Contains(c[0], filepath.Base(files[0])) {
			t.Errorf("the backup folder changed by %v, want only the survey file added", c)
		}
	})

	t.Run("damaged-backend", func(t *testing.T) {
		s := staged.Copy(t)
		db := filepath.Join(s.Root, s.Profile.DataDir, "member/snap/db")
		f, err := os.OpenFile(db, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, 16<<10), 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		_, r := run(t, s, nil)
		if r.PlanSource != "backup" || len(r.Sources) != 2 {
			t.Fatalf("recommended %s (%s) of %d sources, want the backup", r.RecommendedPath, r.PlanSource, len(r.Sources))
		}
		if d := r.Sources[1]; d.Kind != survey.DataDir || d.Usable() || !strings.Contains(d.Error, "backend") {
			t.Errorf("data dir row %+v: want it reported damaged, naming its backend", d)
		}
	})

	for _, tc := range []struct {
		name   string
		refuse error
		says   string
	}{
		{"read-only-volume", fmt.Errorf("%w (test)", boot.ErrBackupReadOnly), "survey not written beside the backup: the backup volume is read-only (test)"},
		{"write-fails", errors.New("no space left on device"), "survey not written beside the backup: no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := staged.Copy(t)
			console, r := run(t, s, tc.refuse)
			if r.PlanSource != "survivor-data" {
				t.Errorf("recommended %s, want the data dir", r.PlanSource)
			}
			if !strings.Contains(console, tc.says) {
				t.Errorf("the console does not say %q:\n%s", tc.says, console)
			}
			if f := surveyFiles(t, s.BackupDir); len(f) != 0 {
				t.Errorf("survey files written: %v", f)
			}
		})
	}
}

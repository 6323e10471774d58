package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestJournalSurvivesReopenAndNamesRunsUniquely(t *testing.T) {
	root := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j, err := Open(root, "restore", now)
	if err != nil {
		t.Fatal(err)
	}
	if j.Exists() || j.RunID != "20260102-030405" {
		t.Fatalf("fresh journal: exists %v, run %s", j.Exists(), j.RunID)
	}
	if err := j.Note("k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := j.AddKept(Kept{From: "/a", To: "/b", How: "moved"}); err != nil {
		t.Fatal(err)
	}
	j.AddKept(Kept{From: "/a", To: "/b", How: "moved"}) // a resumed run records nothing twice
	again, err := Open(root, "restore", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if again.RunID != j.RunID || again.Notes["k"] != "v" || len(again.Kept) != 1 {
		t.Fatalf("reopened journal %+v", again)
	}
	// a later run in the same second gets its own backup folder
	os.MkdirAll(j.BackupDir(root), 0o700)
	os.Remove(Path(root, "restore"))
	next, _ := Open(root, "restore", now)
	if next.RunID != "20260102-030405-2" {
		t.Fatalf("run id %s reuses a backup folder", next.RunID)
	}
}

func TestDamagedJournalSaysWhatToDo(t *testing.T) {
	root := t.TempDir()
	p := Path(root, "join")
	os.MkdirAll(filepath.Dir(p), 0o700)
	os.WriteFile(p, []byte("{not json"), 0o600)
	if _, err := Open(root, "join", time.Now()); err == nil {
		t.Fatal("a damaged journal was accepted")
	}
}

func TestBeginResumesRefusesAndArchives(t *testing.T) {
	root := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := map[string]string{"name": "a"}
	j, resumed, err := Begin(root, "join", a, now, false)
	if err != nil || resumed || j.Params["name"] != "a" {
		t.Fatalf("first begin: %v resumed=%v %+v", err, resumed, j)
	}
	if err := j.SetStep("keep", "done", nil); err != nil {
		t.Fatal(err)
	}
	if j, resumed, err = Begin(root, "join", a, now.Add(time.Minute), false); err != nil || !resumed || !j.StepDone("keep") {
		t.Fatalf("same parameters did not resume: %v resumed=%v", err, resumed)
	}
	b := map[string]string{"name": "b"}
	if _, _, err := Begin(root, "join", b, now, false); err == nil || !strings.Contains(err.Error(), "an unfinished join (run 20260102-030405, started with name=a)") {
		t.Fatalf("other parameters over an unfinished run: %v", err)
	}
	fin := now.Add(time.Hour)
	j.Finished = &fin
	if err := j.Save(); err != nil {
		t.Fatal(err)
	}
	dry, resumed, err := Begin(root, "join", b, now, true)
	if err != nil || resumed || dry.RunID == j.RunID || len(dry.Steps) != 0 {
		t.Fatalf("dry run after a finished run: %v resumed=%v %+v", err, resumed, dry)
	}
	if _, err := os.Stat(Path(root, "join")); err != nil {
		t.Fatalf("a dry run moved the finished journal: %v", err)
	}
	next, resumed, err := Begin(root, "join", b, now, false)
	if err != nil || resumed || next.RunID != "20260102-030405-2" || next.Exists() {
		t.Fatalf("new run after a finished one: %v resumed=%v %+v", err, resumed, next)
	}
	if _, err := os.Stat(filepath.Join(j.BackupDir(root), "join-state.json")); err != nil {
		t.Fatalf("finished journal not kept in its run's backup folder: %v", err)
	}
}

func TestCreatedPathsAreRecordedOnceAndChecked(t *testing.T) {
	root := t.TempDir()
	j, err := Open(root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "etc/systemd/system/etcd-rescue-signer.service")
	for range 2 {
		if err := j.AddCreated(p); err != nil {
			t.Fatal(err)
		}
	}
	again, err := Open(root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Created) != 1 || !again.IsCreated(p) || again.IsCreated(p+".x") {
		t.Fatalf("created %v", again.Created)
	}
	if err := again.CheckInRoot(root); err != nil {
		t.Fatal(err)
	}
	if err := again.CheckInRoot(t.TempDir()); err == nil {
		t.Error("a created path outside the root was accepted")
	}
	again.Created = append(again.Created, root+"/etc/../../elsewhere")
	if err := again.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root, "restore", time.Now()); err == nil || !strings.Contains(err.Error(), "created path") {
		t.Fatalf("a forged created path: %v", err)
	}
}

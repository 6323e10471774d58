package journal

import (
	"os"
	"path/filepath"
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

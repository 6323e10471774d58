package keep

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
)

// TestReplaceKeepsTheOldFileAside: a file there is moved to the backup
// folder byte for byte, with its mode, before the new one is written; a
// second call (a re-run) keeps nothing again.
func TestReplaceKeepsTheOldFileAside(t *testing.T) {
	k := keeper(t)
	p := filepath.Join(k.Root, "var/lib/etcd-rescue/bin/etcd-rescue")
	write(t, p, "old binary")
	if err := os.Chmod(p, 0o751); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := k.Replace(p, []byte("new binary"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	to := k.Backup("var/lib/etcd-rescue/bin/etcd-rescue")
	if read(t, p) != "new binary" || read(t, to) != "old binary" {
		t.Fatalf("%s holds %q, %s holds %q", p, read(t, p), to, read(t, to))
	}
	if fi, err := os.Stat(to); err != nil || fi.Mode().Perm() != 0o751 {
		t.Errorf("the kept file's mode: %v %v", fi.Mode(), err)
	}
	if len(k.Journal.Kept) != 1 || k.Where(p) != to || len(k.Journal.Created) != 0 {
		t.Fatalf("journal: kept %+v, created %v", k.Journal.Kept, k.Journal.Created)
	}
	// A later write of other content (a resumed run with another binary)
	// does not move the run's own file over the kept one.
	if err := k.Replace(p, []byte("newer binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if read(t, to) != "old binary" || read(t, p) != "newer binary" {
		t.Fatalf("after a rewrite: kept %q, live %q", read(t, to), read(t, p))
	}
}

// TestReplaceRecordsACreatedFile: a path with nothing there is recorded
// as created, in the journal on disk, once.
func TestReplaceRecordsACreatedFile(t *testing.T) {
	k := keeper(t)
	p := filepath.Join(k.Root, "etc/systemd/system/etcd-rescue-signer.service")
	for range 2 {
		if err := k.Replace(p, []byte("[Unit]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if read(t, p) != "[Unit]\n" || len(k.Journal.Kept) != 0 {
		t.Fatalf("%s holds %q; kept %+v", p, read(t, p), k.Journal.Kept)
	}
	again, err := journal.Open(k.Root, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Created, []string{p}) {
		t.Fatalf("created %v, want [%s]", again.Created, p)
	}
	// Writing it again with other content keeps nothing: it is the run's.
	if err := k.Replace(p, []byte("[Unit]\nDescription=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(k.Journal.Kept) != 0 || len(k.Journal.Created) != 1 {
		t.Fatalf("kept %+v, created %v", k.Journal.Kept, k.Journal.Created)
	}
}

// TestBeforeWriteResumesAfterACrash: a crash between the record and the
// write (or between the record and the move) leaves a state the next
// call finishes without losing the old file or recording anything twice.
func TestBeforeWriteResumesAfterACrash(t *testing.T) {
	t.Run("moved, not yet written", func(t *testing.T) {
		k := keeper(t)
		p := filepath.Join(k.Root, "etc/etcd-rescue/plan.yaml")
		write(t, p, "old plan")
		if err := k.BeforeWrite(p); err != nil {
			t.Fatal(err)
		}
		// The crash: nothing written. The re-run writes.
		if err := k.Replace(p, []byte("new plan"), 0o644); err != nil {
			t.Fatal(err)
		}
		if read(t, k.Where(p)) != "old plan" || read(t, p) != "new plan" || len(k.Journal.Kept) != 1 {
			t.Fatalf("kept %+v", k.Journal.Kept)
		}
	})
	t.Run("recorded, not yet moved", func(t *testing.T) {
		k := keeper(t)
		p := filepath.Join(k.Root, "etc/etcd-rescue/plan.yaml")
		write(t, p, "old plan")
		to := k.Backup("etc/etcd-rescue/plan.yaml")
		if err := k.Journal.AddKept(journal.Kept{From: p, To: to, How: journal.Moved}); err != nil {
			t.Fatal(err)
		}
		if err := k.Replace(p, []byte("new plan"), 0o644); err != nil {
			t.Fatal(err)
		}
		if read(t, to) != "old plan" || read(t, p) != "new plan" || len(k.Journal.Kept) != 1 {
			t.Fatalf("kept %+v", k.Journal.Kept)
		}
	})
	t.Run("kept file and live file both gone", func(t *testing.T) {
		k := keeper(t)
		p := filepath.Join(k.Root, "etc/etcd-rescue/plan.yaml")
		if err := k.Journal.AddKept(journal.Kept{From: p, To: k.Backup("etc/etcd-rescue/plan.yaml"), How: journal.Moved}); err != nil {
			t.Fatal(err)
		}
		if err := k.BeforeWrite(p); err == nil {
			t.Fatal("a lost kept file went unnoticed")
		}
	})
}

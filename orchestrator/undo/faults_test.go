package undo_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/lock"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/undo"
)

// editRestoreJournal rewrites the restore's journal as a damaged or
// forged one would be.
func editRestoreJournal(f func(j *journal.Journal)) func(*testing.T, *disaster.Scene, *undo.Options) {
	return func(t *testing.T, s *disaster.Scene, _ *undo.Options) {
		t.Helper()
		j, err := journal.Open(s.Root, "restore", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		f(j)
		if err := j.Save(); err != nil {
			t.Fatal(err)
		}
	}
}

// editKept changes the restore journal's record of what it kept from rel.
func editKept(rel string, f func(s *disaster.Scene, k *journal.Kept)) func(*testing.T, *disaster.Scene, *undo.Options) {
	return func(t *testing.T, s *disaster.Scene, o *undo.Options) {
		editRestoreJournal(func(j *journal.Journal) {
			for i := range j.Kept {
				if strings.HasSuffix(j.Kept[i].From, "/"+rel) {
					f(s, &j.Kept[i])
					return
				}
			}
			t.Fatalf("the restore kept nothing from %s", rel)
		})(t, s, o)
	}
}

func TestRefusedUndoFailsClearlyAndChangesNothing(t *testing.T) {
	faults := []struct {
		name   string
		damage func(t *testing.T, s *disaster.Scene, o *undo.Options)
		want   string
	}{
		{"run not recorded", func(_ *testing.T, _ *disaster.Scene, o *undo.Options) { o.Run = "20000101-000000" }, "no restore or undo run 20000101-000000 is recorded"},
		{"run ID climbs out", func(_ *testing.T, _ *disaster.Scene, o *undo.Options) { o.Run = ".." }, `".." is not a folder name`},
		{"run ID with a slash", func(_ *testing.T, _ *disaster.Scene, o *undo.Options) { o.Run = "x/../../etc" }, `contains "/"`},
		{"journal's run ID forged", editRestoreJournal(func(j *journal.Journal) { j.RunID = "../../etc" }), `contains "/"`},
		{"journal damaged", func(t *testing.T, s *disaster.Scene, _ *undo.Options) {
			if err := os.WriteFile(journal.Path(s.Root, "restore"), []byte("{not json"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is damaged"},
		{"kept path with ..", editKept("var/lib/etcd", func(s *disaster.Scene, k *journal.Kept) {
			k.To = recorded(k) + "/var/lib/etcd-rescue/backup/x/../../../../etc"
		}), "is not clean"},
		{"kept path outside the backup folders", editKept("var/lib/etcd", func(s *disaster.Scene, k *journal.Kept) {
			k.To = recorded(k) + "/etc/kubernetes"
		}), "is neither in /var/lib/etcd-rescue/backup nor the run's etcd-rescue-kept-"},
		{"kept path a kept folder of another run", editKept("var/lib/etcd", func(s *disaster.Scene, k *journal.Kept) {
			k.To = recorded(k) + "/etc/etcd-rescue-kept-20000101-000000"
		}), "nor the run's etcd-rescue-kept-"},
		{"live path outside the root", editKept("var/lib/etcd", func(s *disaster.Scene, k *journal.Kept) {
			k.From = filepath.Dir(recorded(k)) + "/elsewhere/etcd"
		}), "is outside the root"},
		{"live path inside the backup folders", editKept("var/lib/etcd", func(s *disaster.Scene, k *journal.Kept) {
			k.From = recorded(k) + "/var/lib/etcd-rescue/backup/x"
		}), "is inside the backup folders"},
		{"kept entry names a path", editKept("var/lib/etcd", func(s *disaster.Scene, k *journal.Kept) {
			k.Entries = []string{"../../../etc"}
		}), `contains "/"`},
		{"unknown way of keeping", editKept("var/lib/etcd", func(s *disaster.Scene, k *journal.Kept) { k.How = "deleted" }), `unknown way "deleted"`},
		{"kept state moved away since", func(t *testing.T, s *disaster.Scene, _ *undo.Options) {
			j, _ := journal.Open(s.Root, "restore", time.Now())
			var k journal.Kept
			for _, r := range j.Kept {
				if strings.HasSuffix(r.From, "/"+s.Profile.Manifest) {
					k = r
				}
			}
			if err := os.Rename(onRoot(s, k.To), filepath.Join(s.Root, "moved-by-hand.yaml")); err != nil {
				t.Fatal(err)
			}
		}, "but it is not there"},
		{"created path with ..", editRestoreJournal(func(j *journal.Journal) {
			j.Created = append(j.Created, recorded(&j.Kept[0])+"/etc/../../etc/passwd")
		}), "created entry 1"},
		{"created path outside the root", editRestoreJournal(func(j *journal.Journal) {
			j.Created = append(j.Created, filepath.Dir(recorded(&j.Kept[0]))+"/elsewhere/unit")
		}), "is outside the root"},
		{"created path inside the backup folders", editRestoreJournal(func(j *journal.Journal) {
			j.Created = append(j.Created, recorded(&j.Kept[0])+"/var/lib/etcd-rescue/backup/x/unit")
		}), "is inside the backup folders"},
		{"nothing kept", editRestoreJournal(func(j *journal.Journal) { j.Kept = nil }), "kept nothing aside"},
		{"another run holds the root", func(t *testing.T, s *disaster.Scene, _ *undo.Options) {
			l, err := lock.Acquire(s.Root)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Release() })
		}, "holds " + "ROOT"},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			s, _ := restoredScene(t, profile.Kubeadm)
			var out bytes.Buffer
			o := undo.Options{Root: s.Root, Out: &out}
			f.damage(t, s, &o)
			snap, before := disaster.Snap(t, s.Root), disaster.TreeHash(t, s.Root)
			err := undo.Run(context.Background(), o)
			want := strings.ReplaceAll(f.want, "ROOT", s.Root)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want it to say %q\n%s", err, want, out.String())
			}
			if !strings.Contains(out.String(), "UNDO-FAILED: ") {
				t.Errorf("no UNDO-FAILED marker:\n%s", out.String())
			}
			if disaster.TreeHash(t, s.Root) != before {
				t.Fatalf("a refused undo changed the root: %v", snap.Changes(t))
			}
		})
	}
}

// TestUndoRefusesWhileEtcdRuns runs the restored etcd on the data dir: the
// undo must refuse before moving anything.
func TestUndoRefusesWhileEtcdRuns(t *testing.T) {
	s, _ := restoredScene(t, profile.Kubeadm)
	cli := s.StartFromManifest(t, s.Root)
	defer cli.Close()
	own := filepath.Join(s.Root, journal.Dir)
	snap, before := disaster.Snap(t, own), disaster.TreeHash(t, own)
	manifest := disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.Manifest))
	var out bytes.Buffer
	err := undo.Run(context.Background(), undo.Options{Root: s.Root, Out: &out})
	if err == nil || !strings.Contains(err.Error(), "etcd is running on "+filepath.Join(s.Root, s.Profile.DataDir)) {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	if disaster.TreeHash(t, own) != before || disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.Manifest)) != manifest {
		t.Fatalf("a refused undo changed the root: %v", snap.Changes(t))
	}
	if _, err := cli.Get(context.Background(), "health"); err != nil {
		t.Errorf("etcd no longer serves after the refused undo: %v", err)
	}
}

// TestUndoAfterUndoOfUndoSaysWhereTheStateWent: once an undo was undone,
// the restore's kept state lives in the second undo's folder; undoing the
// restore again is refused, naming how to go on.
func TestUndoAgainAfterUndoOfUndoIsRefused(t *testing.T) {
	s, _ := restoredScene(t, profile.Kubeadm)
	j, _ := journal.Open(s.Root, "restore", time.Now())
	runUndo(t, s, "", false)
	runUndo(t, s, undoJournal(t, s).RunID, false)
	snap, before := disaster.Snap(t, s.Root), disaster.TreeHash(t, s.Root)
	var out bytes.Buffer
	err := undo.Run(context.Background(), undo.Options{Root: s.Root, Run: j.RunID, Out: &out})
	if err == nil || !strings.Contains(err.Error(), "etcd-rescue undo --run <that run>") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	if disaster.TreeHash(t, s.Root) != before {
		t.Fatalf("a refused undo changed the root: %v", snap.Changes(t))
	}
}

// onRoot maps a path the restore recorded on the staged root to the same
// path on this test's copy of it.
func onRoot(s *disaster.Scene, p string) string {
	i := strings.Index(p, "/"+journal.Dir+"/")
	return s.Root + p[i:]
}

// recorded is the root the restore ran on, as its record of the data dir
// names it.
func recorded(k *journal.Kept) string { return strings.TrimSuffix(k.From, "/var/lib/etcd") }

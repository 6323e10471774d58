package keep

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

func keeper(t *testing.T) *Keeper {
	t.Helper()
	root := t.TempDir()
	j, _, err := journal.Begin(root, "test", map[string]string{"n": "1"}, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), false)
	if err != nil {
		t.Fatal(err)
	}
	return &Keeper{Root: root, Journal: j}
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMoveIsRecordedAndRepeatable(t *testing.T) {
	k := keeper(t)
	from := filepath.Join(k.Root, "etc/kubernetes/manifests/etcd.yaml")
	write(t, from, "old")
	to := k.Backup("etc/kubernetes/manifests/etcd.yaml")
	for range 2 { // a resumed run moves nothing twice
		if err := k.Move(from, to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Lstat(from); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", from, err)
	}
	if read(t, to) != "old" || k.Where(from) != to || len(k.Journal.Kept) != 1 {
		t.Fatalf("kept %+v", k.Journal.Kept)
	}
	again, err := journal.Open(k.Root, "test", time.Now())
	if err != nil || len(again.Kept) != 1 || again.Kept[0].From != from || again.Kept[0].To != to || again.Kept[0].How != journal.Moved {
		t.Fatalf("journal on disk: %v %+v", err, again)
	}
}

func TestMoveContentsKeepsTheFolderAndFollowsASymlink(t *testing.T) {
	k := keeper(t)
	// The data dir is a symlink to a folder elsewhere on the root: the
	// link stays, the target's contents move.
	target := filepath.Join(k.Root, "srv/etcd")
	write(t, filepath.Join(target, "member/snap/db"), "db")
	write(t, filepath.Join(target, ".etcd-rescue-restore-x/member"), "scratch")
	if err := os.MkdirAll(filepath.Join(target, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(k.Root, "var/lib/etcd")
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../srv/etcd", dataDir); err != nil {
		t.Fatal(err)
	}
	to, err := k.MoveContents(dataDir, "var/lib/etcd")
	if err != nil {
		t.Fatal(err)
	}
	if to != k.Backup("var/lib/etcd") {
		t.Errorf("kept at %s, want the backup folder on the same filesystem", to)
	}
	if l, err := os.Readlink(dataDir); err != nil || l != "../../srv/etcd" {
		t.Errorf("the symlink changed: %q %v", l, err)
	}
	if read(t, filepath.Join(to, "member/snap/db")) != "db" {
		t.Error("member not kept")
	}
	if got := Entries(dataDir); len(got) != 0 {
		t.Errorf("left in the data dir: %v", got)
	}
	for _, n := range []string{"lost+found", ".etcd-rescue-restore-x"} {
		if _, err := os.Stat(filepath.Join(target, n)); err != nil {
			t.Errorf("%s was moved: %v", n, err)
		}
	}
	rec, ok := k.Journal.KeptAt(dataDir)
	if !ok || rec.How != journal.MovedContents || !slices.Equal(rec.Entries, []string{"member"}) {
		t.Fatalf("record %+v", rec)
	}
	// A second run finds nothing to move and the same target.
	if again, err := k.MoveContents(dataDir, "var/lib/etcd"); err != nil || again != to || len(k.Journal.Kept) != 1 {
		t.Fatalf("second move: %s %v %+v", again, err, k.Journal.Kept)
	}
}

func TestCopyKeepsTheOriginal(t *testing.T) {
	k := keeper(t)
	from := filepath.Join(k.Root, "etc/etcd/etcd.conf")
	write(t, from, "ETCD_NAME=a\n")
	to := k.Backup("etc/etcd/etcd.conf")
	if err := k.Copy(from, to); err != nil {
		t.Fatal(err)
	}
	if read(t, from) != read(t, to) {
		t.Fatal("copy differs")
	}
	if rec, ok := k.Journal.KeptAt(from); !ok || rec.How != journal.Copied {
		t.Fatalf("record %+v", rec)
	}
}

// TestSymlinkedDataDirKeepsTheLink: a data dir that is an absolute symlink
// inside the root (/var/lib/etcd -> /data/etcd), resolved in the root as the
// restore resolves it, keeps the link; its target's contents move.
func TestSymlinkedDataDirKeepsTheLink(t *testing.T) {
	k := keeper(t)
	target := filepath.Join(k.Root, "data/etcd")
	write(t, filepath.Join(target, "member/snap/db"), "old")
	link := filepath.Join(k.Root, "var/lib/etcd")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/data/etcd", link); err != nil {
		t.Fatal(err)
	}
	dir := profile.Abs(k.Root, "var/lib/etcd") // as restore and join resolve it
	if dir != target {
		t.Fatalf("resolved %s, want %s", dir, target)
	}
	to, err := k.MoveContents(dir, "var/lib/etcd")
	if err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(link); err != nil || l != "/data/etcd" {
		t.Fatalf("the link changed: %q %v", l, err)
	}
	if len(Entries(target)) != 0 || read(t, filepath.Join(to, "member/snap/db")) != "old" {
		t.Fatalf("contents not moved to %s", to)
	}
	if !strings.HasPrefix(to, k.Root+"/") {
		t.Fatalf("kept outside the root: %s", to)
	}
	if r, ok := k.Journal.KeptAt(target); !ok || r.How != journal.MovedContents || r.To != to {
		t.Fatalf("journal: %+v", k.Journal.Kept)
	}
}

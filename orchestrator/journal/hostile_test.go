package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostileJournalIsRefused: a journal this tool did not write (a run ID
// that climbs out of the backup folder, kept paths with "..", or outside
// the root) is refused with the journal's name and what to do.
func TestHostileJournalIsRefused(t *testing.T) {
	cases := map[string]string{
		"run ID with ../":   `{"operation":"restore","runID":"../../../../escape"}`,
		"run ID empty":      `{"operation":"restore","runID":""}`,
		"run ID with /":     `{"operation":"restore","runID":"a/b"}`,
		"kept path with ..": `{"operation":"restore","runID":"20260101-000000","kept":[{"from":"/var/../../x","to":"/y","how":"moved"}]}`,
		"kept entry a path": `{"operation":"restore","runID":"20260101-000000","kept":[{"from":"/x","to":"/y","how":"moved-contents","entries":["../z"]}]}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			p := Path(root, "restore")
			os.MkdirAll(filepath.Dir(p), 0o700)
			os.WriteFile(p, []byte(body), 0o600)
			_, _, err := Begin(root, "restore", map[string]string{"n": "1"}, time.Now(), true)
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "move it aside") {
				t.Fatalf("err = %v, want a refusal naming %s and saying to move it aside", err, p)
			}
		})
	}
}

func TestKeptPathsOutsideTheRootAreRefused(t *testing.T) {
	root := t.TempDir()
	j, err := Open(root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j.Kept = []Kept{{From: filepath.Join(root, "var/lib/etcd"), To: filepath.Join(root, Dir, "backup/x")}}
	j.Notes["keptDataDir"] = filepath.Join(root, Dir, "backup/x")
	if err := j.CheckInRoot(root, "keptDataDir"); err != nil {
		t.Fatalf("paths inside the root refused: %v", err)
	}
	j.Notes["keptDataDir"] = "/tmp/elsewhere"
	if err := j.CheckInRoot(root, "keptDataDir"); err == nil || !strings.Contains(err.Error(), "not inside the root") {
		t.Fatalf("a note outside the root: err = %v", err)
	}
	j.Notes["keptDataDir"] = ""
	j.Kept = append(j.Kept, Kept{From: filepath.Join(root, "a"), To: "/srv/b"})
	if err := j.CheckInRoot(root, "keptDataDir"); err == nil {
		t.Fatal("a kept path outside the root was accepted")
	}
}

// TestJournalFollowsASymlinkedVarInTheRoot: /var as an absolute symlink
// puts the journal at the link's target inside the root.
func TestJournalFollowsASymlinkedVarInTheRoot(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "data/var"), 0o755)
	os.Symlink("/data/var", filepath.Join(root, "var"))
	want := filepath.Join(root, "data/var/lib/etcd-rescue/restore-state.json")
	if got := Path(root, "restore"); got != want {
		t.Fatalf("journal at %s, want %s", got, want)
	}
}

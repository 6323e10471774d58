package disaster

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSnapChangesNamesWhatChanged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := Snap(t, dir)
	if c := snap.Changes(t); len(c) != 0 {
		t.Fatalf("unchanged folder reports changes: %v", c)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := snap.Changes(t)
	if len(c) != 1 || !slices.ContainsFunc(c, func(l string) bool { return len(l) > 4 && l[:4] == "+ b " }) {
		t.Fatalf("changes = %v, want the new file b", c)
	}
}

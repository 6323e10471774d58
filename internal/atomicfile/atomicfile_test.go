package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteCopyAndAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "a")
	if err := WriteFile(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := CopyFile(p, p+".copy", 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p + ".copy")
	st, _ := os.Stat(p + ".copy")
	if string(b) != "one" || st.Mode().Perm() != 0o600 {
		t.Fatalf("copy holds %q with mode %v", b, st.Mode())
	}
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half")
	f.Abort()
	b, _ = os.ReadFile(p)
	entries, _ := os.ReadDir(filepath.Dir(p))
	if string(b) != "one" || len(entries) != 2 {
		t.Fatalf("an aborted write left %q and %d files", b, len(entries))
	}
}

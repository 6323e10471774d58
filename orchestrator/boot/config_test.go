package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadLimited(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.ign")
	if err := os.WriteFile(p, make([]byte, 1001), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readLimited(p, 1000); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("over the limit: err = %v", err)
	}
	b, err := readLimited(p, 1001)
	if err != nil || len(b) != 1001 {
		t.Fatalf("at the limit: %d bytes, %v", len(b), err)
	}
}

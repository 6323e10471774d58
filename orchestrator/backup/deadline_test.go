package backup

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStatusWalkHasADeadline: bbolt waits without end for a file another
// process holds (and walks a damaged file with page loops without end);
// the check must give up with a clear error instead of hanging the restore.
func TestStatusWalkHasADeadline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)

	old := statusDeadline
	statusDeadline = func(int64) time.Duration { return 300 * time.Millisecond }
	defer func() { statusDeadline = old }()
	start := time.Now()
	_, err = snapshotStatus(p, 4096)
	if err == nil || !strings.Contains(err.Error(), "did not end within 300ms") {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

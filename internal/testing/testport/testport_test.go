package testport

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestBlocksHeldByOthersAreSkipped holds, as other test processes would,
// every block but one this process can take: Free must return a port of
// that one, and of no block another holds.
func TestBlocksHeldByOthersAreSkipped(t *testing.T) {
	mu.Lock()
	block = -1
	mu.Unlock()
	if err := os.MkdirAll(lockDir, 0o777); err != nil {
		t.Fatal(err)
	}
	var others []*os.File
	defer func() {
		for _, f := range others {
			f.Close()
		}
	}()
	free := -1
	for b := 0; b < blocks; b++ {
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("block-%d", b)), os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // held by a test process running now
			continue
		}
		others = append(others, f)
		free = b
	}
	if free < 0 {
		t.Fatal("every block is held by other processes")
	}
	others[len(others)-1].Close() // the one left for Free
	others = others[:len(others)-1]
	p := Free(t)
	if lo, hi := first+free*blockSize, first+(free+1)*blockSize; p < lo || p >= hi {
		t.Errorf("Free gave port %d, outside the only block not held by another process (%d–%d)", p, lo, hi-1)
	}
	if q := Free(t); q != p+1 && (q < first+free*blockSize || q >= first+(free+1)*blockSize) {
		t.Errorf("second port %d is outside the block held (%d)", q, free)
	}
}

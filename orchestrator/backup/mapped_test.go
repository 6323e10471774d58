package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMappedChunksHandsEveryByteInOrder reads the first n bytes of a file
// of two windows and a bit, and compares them.
func TestMappedChunksHandsEveryByteInOrder(t *testing.T) {
	data := make([]byte, 2*mapWindow+4097)
	r := rand.NewChaCha8([32]byte{7})
	r.Read(data)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int64{0, 1, mapWindow, mapWindow + 1, int64(len(data)) - 32, int64(len(data))} {
		var got []byte
		calls := 0
		if err := mappedChunks(context.Background(), f, n, func(b []byte) error {
			got = append(got, b...)
			calls++
			return nil
		}); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !bytes.Equal(got, data[:n]) {
			t.Errorf("n=%d: got %d bytes (sha %x), want sha %x", n, len(got), sha256.Sum256(got), sha256.Sum256(data[:n]))
		}
		if want := int((n + mapWindow - 1) / mapWindow); calls != want {
			t.Errorf("n=%d: %d windows, want %d", n, calls, want)
		}
	}
}

// TestMappedChunksFileCutShort asks for more than the file holds, as when
// a file is cut while it is read: an error that says so, not a SIGBUS.
func TestMappedChunksFileCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, mapWindow+8192), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = mappedChunks(context.Background(), f, 3*mapWindow, func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "cut short") || errors.Is(err, errNoMapping) {
		t.Fatalf("reading past the end: %v, want an error that says the file was cut short", err)
	}
}

// TestFaultInAWindowIsAnError cuts the file under a populated window, so
// reading it faults (what populate cannot see coming): the fault must come
// back as an error with the offset.
func TestFaultInAWindowIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := mapAndPopulate(f, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	var sum byte
	err = faultAsError(b, 0, func() error {
		for _, c := range b {
			sum += c
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "read at offset 4096 failed") {
		t.Fatalf("reading a window past the file's new end: %v (sum %d), want an error at offset 4096", err, sum)
	}
}

// TestUnmappableFileFallsBack: a descriptor that cannot be mapped for
// reading returns errNoMapping, on which checkTrailer reads instead.
func TestUnmappableFileFallsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = mappedChunks(context.Background(), f, 8192, func([]byte) error { return nil })
	if !errors.Is(err, errNoMapping) {
		t.Fatalf("mapping a write-only descriptor: %v, want errNoMapping", err)
	}
}

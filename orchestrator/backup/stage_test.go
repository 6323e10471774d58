package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/boltcheck"
)

// TestStageSnapshot: one read of a snapshot leaves the staged db file
// without its trailer, the snapshot's body with its free list synced, with the same
// figures VerifySnapshot gives; a damaged one leaves nothing staged, with
// VerifySnapshot's messages.
func TestStageSnapshot(t *testing.T) {
	body := dbFile(t)
	sum := sha256.Sum256(body)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	snap := write("snapshot.db", append(append([]byte{}, body...), sum[:]...))
	ctx := context.Background()
	want, err := VerifySnapshot(ctx, snap, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	staged := filepath.Join(dir, "staging", "db")
	if err := os.MkdirAll(filepath.Dir(staged), 0o700); err != nil {
		t.Fatal(err)
	}
	var last, total int64
	info, err := StageSnapshot(ctx, snap, staged, false, func(done, all int64) { last, total = done, all })
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(staged)
	if err != nil {
		t.Fatal(err)
	}
	// The copy is the body but for the free list synced into it: the meta
	// page used points at a free list page at the high water mark.
	ps, hwm := int64(info.Check.PageSize), int64(info.Check.Pages)
	other := int64(1 - info.Check.Meta)
	if len(got) < len(body) || !bytes.Equal(got[2*ps:hwm*ps], body[2*ps:hwm*ps]) ||
		!bytes.Equal(got[other*ps:(other+1)*ps], body[other*ps:(other+1)*ps]) {
		t.Errorf("staged %d bytes, want the snapshot's %d-byte body with its free list synced", len(got), len(body))
	}
	if rep, err := boltcheck.Check(ctx, staged, boltcheck.Options{}); err != nil || rep.FreePages != info.Check.FreePages || rep.FreelistPages == 0 {
		t.Errorf("the staged copy's free list: %v, %+v; want %d free pages on a synced list", err, rep, info.Check.FreePages)
	}
	if !info.HasHash || info.Status != want.Status {
		t.Errorf("staged status %+v (trailer %v), VerifySnapshot says %+v", info.Status, info.HasHash, want.Status)
	}
	if last != total || total != 2*info.Size {
		t.Errorf("progress ended at %d of %d, want %d", last, total, 2*info.Size)
	}

	flipped := append(append([]byte{}, body...), sum[:]...)
	flipped[len(body)/2] ^= 1
	noTrailer := write("db-copy", body)
	notBbolt := bytes.Repeat([]byte("not bbolt"), 512)[:4096]
	notBboltSum := sha256.Sum256(notBbolt)
	for _, c := range []struct {
		name string
		src  string
		skip bool
		want string
	}{
		{"flipped byte", write("flipped.db", flipped), false, "is damaged: its sha256"},
		{"no trailer", noTrailer, false, "has no sha256 trailer"},
		{"empty", write("empty.db", nil), false, "is empty"},
		{"not bbolt", write("junk.db", append(notBbolt, notBboltSum[:]...)), false, "fails etcd's integrity check"},
	} {
		_, err := StageSnapshot(ctx, c.src, staged, c.skip, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
		if _, err := os.Stat(staged); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the staged copy is left behind (%v)", c.name, err)
		}
	}
	if info, err := StageSnapshot(ctx, noTrailer, staged, true, nil); err != nil || info.HasHash || info.Status != want.Status {
		t.Errorf("a db file with --skip-hash-check: %v, %+v", err, info)
	}
}

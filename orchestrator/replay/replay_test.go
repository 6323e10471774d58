package replay_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/replay"
)

// TestReplayKeepsEveryAcknowledgedWrite: a cluster of each etcd version
// loses power right after the last write was acknowledged
// (etcdtest.PowerLoss): the survivor's writes are only in its WAL, and the
// commit index it saved lags the last acknowledged ones. Copy, CommitLog and
// Apply bring the copy's backend to the revision clients last saw; the
// survivor's own data dir is not changed.
func TestReplayKeepsEveryAcknowledgedWrite(t *testing.T) {
	for _, v := range []string{"3.4.23", "3.5.35", "3.6.16", "3.7.3"} {
		t.Run(v, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etcd")
			rev := etcdtest.PowerLoss(t, etcdtest.VersionBinary(t, v), dir, 0, 300)
			if info, err := etcddata.Read(etcddata.DBPath(dir)); err != nil || info.Revision >= rev {
				t.Fatalf("the survivor's backend: %+v, %v; the writes (to revision %d) were meant to be only in its WAL", info, err, rev)
			}
			before := disaster.TreeHash(t, dir)

			cp := filepath.Join(t.TempDir(), "copy")
			var copied [2]int64
			if err := replay.Copy(dir, cp, func(done, total int64) { copied = [2]int64{done, total} }); err != nil {
				t.Fatal(err)
			}
			if size := copySize(t, cp); copied != [2]int64{size, size} {
				t.Errorf("the copy's last progress: %d of %d bytes, want all of the %d copied", copied[0], copied[1], size)
			}
			backend, err := etcddata.Read(etcddata.DBPath(cp))
			if err != nil {
				t.Fatal(err)
			}
			l, err := replay.CommitLog(cp)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("WAL: commit %d, last %d (term %d), raised %d", l.Commit, l.LastIndex, l.LastTerm, l.Raised())
			var applied [][2]int64
			a, err := replay.Apply(context.Background(), cp, l.LastIndex, func(done, total int64) { applied = append(applied, [2]int64{done, total}) })
			if err != nil {
				t.Fatal(err)
			}
			// The progress counts the entries the backend lacked, as the
			// server applies them.
			want := int64(l.LastIndex - backend.ConsistentIndex)
			if n := len(applied); want <= 0 || n == 0 || applied[n-1] != [2]int64{want, want} || applied[0][0] > applied[n-1][0] {
				t.Errorf("the apply's progress %v: want it to reach %d of %d entries (the WAL to %d, the backend at %d)", applied, want, want, l.LastIndex, backend.ConsistentIndex)
			}
			if a.Revision != rev {
				t.Errorf("revision after the replay %d, want %d (the last acknowledged write)", a.Revision, rev)
			}
			if a.AppliedIndex < l.LastIndex {
				t.Errorf("applied %d, want at least %d", a.AppliedIndex, l.LastIndex)
			}
			if after := disaster.TreeHash(t, dir); after != before {
				t.Error("the survivor's data dir changed")
			}

			// The finding CommitLog answers: without it, the forced new
			// cluster stops at the saved commit index, short of the last
			// acknowledged writes. (The WALs of etcd 3.4 and 3.5 need
			// CommitLog to apply at all: their v2 requests.)
			if v == "3.4.23" || v == "3.5.35" {
				return
			}
			plain := filepath.Join(t.TempDir(), "copy")
			if err := replay.Copy(dir, plain, nil); err != nil {
				t.Fatal(err)
			}
			p, err := replay.Apply(context.Background(), plain, l.Commit, nil)
			if err != nil {
				t.Fatal(err)
			}
			if l.Raised() > 0 && p.Revision >= rev {
				t.Errorf("without CommitLog the copy reached revision %d: the test meant the saved commit index to lag the last write (%d)", p.Revision, rev)
			}
			t.Logf("without CommitLog: revision %d of %d", p.Revision, rev)
		})
	}
}

// copySize sums the sizes of the files in a copy.
func copySize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		n += info.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

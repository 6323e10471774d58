// Package replay brings a copy of a survivor's data dir up to date with its
// own WAL, so that a restore from it keeps every write the survivor
// received, not only what its backend had committed when it stopped.
//
// It works on a copy only (Copy makes it): CommitLog marks every entry of
// the copy's WAL committed, Apply has etcd's own server apply them to the
// copy's backend. The survivor's data dir itself is only read.
//
// Why CommitLog may mark the whole log committed: etcd does not sync a
// change of the commit index alone, and a follower learns the commit index
// one message after the entries, so the hard state a survivor saved often
// lags the entries whose writes clients already saw acknowledged; a plain
// --force-new-cluster drops them. The log as etcd reads it (a record
// rewriting an index replaces what followed it) is, by raft's log matching
// property, a prefix of the log of the leader of its last entry's term, and
// that leader held every entry committed before it (leader completeness).
// So every entry acknowledged to a client up to that term is in this log at
// the index where the log has it, and no other entry is. An entry in the
// log that a quorum never stored was never acknowledged: its client got an
// error or a timeout, whose outcome etcd documents as unknown, so applying
// it breaks no promise. Entries acknowledged in later terms, that never
// reached this member, are not in its log: the survey reports what that can
// cost, and the revision bump covers it.
package replay

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
)

// logger is etcd's logger for its WAL and server code; callers print their own lines.
var logger = zap.NewNop()

// Progress is called with the work done so far and the work to do in all:
// bytes for Copy, entries for Apply.
type Progress func(done, total int64)

// Copy copies what etcd reads from a data dir, member/snap/db, the raft
// snapshots (*.snap) and their backends (*.snap.db), and the WAL segments
// (member/wal/*.wal), from src into dst, which must not exist yet. Every
// file is synced; leftovers etcd ignores or removes (*.tmp, *.broken) are
// not copied. progress (may be nil) follows the bytes copied of the files'
// sizes summed.
func Copy(src, dst string, progress Progress) error {
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("copy of %s: %s already exists", src, dst)
	}
	files, total, err := filesToCopy(src)
	if err != nil {
		return err
	}
	done := &counter{progress: progress, total: total}
	for _, dir := range []string{"snap", "wal"} {
		if err := os.MkdirAll(filepath.Join(dst, "member", dir), 0o700); err != nil {
			return err
		}
	}
	for _, rel := range files {
		if err := copyFile(filepath.Join(src, rel), filepath.Join(dst, rel), done); err != nil {
			return err
		}
	}
	for _, d := range []string{filepath.Join(dst, "member", "snap"), filepath.Join(dst, "member", "wal"), filepath.Join(dst, "member"), dst} {
		if err := atomicfile.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// filesToCopy lists the files Copy copies (relative to src) and their
// sizes summed.
func filesToCopy(src string) (files []string, total int64, err error) {
	want := func(dir, name string) bool {
		switch dir {
		case "snap":
			return name == "db" || strings.HasSuffix(name, ".snap") || strings.HasSuffix(name, ".snap.db")
		case "wal":
			return strings.HasSuffix(name, ".wal")
		}
		return false
	}
	for _, dir := range []string{"snap", "wal"} {
		des, err := os.ReadDir(filepath.Join(src, "member", dir))
		if err != nil {
			return nil, 0, err
		}
		for _, de := range des {
			if !de.Type().IsRegular() || !want(dir, de.Name()) {
				continue
			}
			info, err := de.Info()
			if err != nil {
				return nil, 0, err
			}
			files = append(files, filepath.Join("member", dir, de.Name()))
			total += info.Size()
		}
	}
	return files, total, nil
}

// counter counts the bytes copied for a Progress.
type counter struct {
	progress    Progress
	done, total int64
}

func (c *counter) add(n int64) {
	c.done += n
	if c.progress != nil {
		c.progress(c.done, c.total)
	}
}

// copyChunk is how much is copied between two progress reports. Each
// chunk is copied by the kernel (copy_file_range), as a whole file would be.
const copyChunk = 8 << 20

func copyFile(from, to string, done *counter) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	for {
		n, err := io.CopyN(out, in, copyChunk)
		done.add(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", from, err)
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Log is what CommitLog found in a WAL.
type Log struct {
	// SnapshotIndex is the raft snapshot the WAL was read from.
	SnapshotIndex uint64
	// Commit is the commit index the member had saved; LastIndex and
	// LastTerm are the newest entry of the log.
	Commit, LastIndex, LastTerm uint64
	// Repaired says the newest segment ended in a torn record, cut off as
	// etcd cuts it off when it starts.
	Repaired bool
	// V2Requests counts the entries in etcd 3.4's v2 form that CommitLog
	// emptied (see v2Request).
	V2Requests int
}

// Raised is how many entries CommitLog marked committed.
func (l *Log) Raised() uint64 {
	if l.LastIndex > l.Commit {
		return l.LastIndex - l.Commit
	}
	return 0
}

// CommitLog reads the WAL of the data dir copy dir with etcd's WAL code,
// as etcd reads it when it starts (from the newest raft snapshot the WAL
// records, a torn last record cut off), and saves a hard state whose
// commit index is the log's last entry (see the package comment for why
// that is sound). It must only be given a copy: it writes to the WAL.
func CommitLog(dir string) (l *Log, err error) {
	defer func() {
		if p := recover(); p != nil { // etcd's WAL decoders panic on some damaged records
			l, err = nil, fmt.Errorf("WAL in %s is damaged: %v", dir, p)
		}
	}()
	walDir := filepath.Join(dir, "member", "wal")
	walSnaps, err := wal.ValidSnapshotEntries(logger, walDir)
	if err != nil {
		return nil, fmt.Errorf("WAL %s is damaged: %w", walDir, err)
	}
	start := &walpb.Snapshot{}
	l = &Log{}
	s, err := snap.New(logger, filepath.Join(dir, "member", "snap")).LoadNewestAvailable(walSnaps)
	switch {
	case err == nil:
		start.Index, start.Term = new(s.GetMetadata().GetIndex()), new(s.GetMetadata().GetTerm())
		l.SnapshotIndex = s.GetMetadata().GetIndex()
	case !errors.Is(err, snap.ErrNoSnapshot):
		return nil, fmt.Errorf("raft snapshot in %s: %w", dir, err)
	}

	var (
		w     *wal.WAL
		state *raftpb.HardState
		ents  []*raftpb.Entry
	)
	for {
		if w, err = wal.Open(logger, walDir, start); err != nil {
			return nil, fmt.Errorf("open WAL %s: %w", walDir, err)
		}
		_, state, ents, err = w.ReadAll()
		if err == nil {
			break
		}
		w.Close()
		// etcd repairs a torn last record once, and so does this.
		if l.Repaired || !errors.Is(err, io.ErrUnexpectedEOF) || !wal.Repair(logger, walDir) {
			return nil, fmt.Errorf("WAL %s is damaged: %w", walDir, err)
		}
		l.Repaired = true
	}
	defer func() {
		if cerr := w.Close(); err == nil && cerr != nil {
			l, err = nil, cerr
		}
	}()

	l.Commit, l.LastIndex, l.LastTerm = state.GetCommit(), l.SnapshotIndex, 0
	if n := len(ents); n > 0 {
		l.LastIndex, l.LastTerm = ents[n-1].GetIndex(), ents[n-1].GetTerm()
	}
	rewrite := emptyV2Requests(ents)
	l.V2Requests = len(rewrite)
	if l.Commit >= l.LastIndex && len(rewrite) == 0 {
		return l, nil
	}
	hs := &raftpb.HardState{Term: new(state.GetTerm()), Vote: new(state.GetVote()), Commit: new(max(l.Commit, l.LastIndex))}
	if len(rewrite) > 0 {
		// Entries saved again at their index replace, when etcd reads the
		// WAL, the old ones from there on: save the tail from the first
		// emptied entry, the others unchanged.
		first := rewrite[0].GetIndex()
		tail := make([]*raftpb.Entry, 0, l.LastIndex-first+1)
		for _, e := range ents {
			if e.GetIndex() >= first {
				tail = append(tail, e)
			}
		}
		for i, e := range tail {
			if v2Request(e) {
				tail[i] = &raftpb.Entry{Term: new(e.GetTerm()), Index: new(e.GetIndex()), Type: raftpb.EntryType_EntryNormal.Enum()}
			}
		}
		if err := w.Save(hs, tail); err != nil {
			return nil, fmt.Errorf("save the WAL in %s: %w", walDir, err)
		}
	} else if err := w.Save(hs, nil); err != nil {
		return nil, fmt.Errorf("save the commit index in %s: %w", walDir, err)
	}
	// Save does not sync a change of the commit index alone.
	if err := w.Sync(); err != nil {
		return nil, err
	}
	return l, nil
}

// emptyV2Requests lists the entries v2Request finds.
func emptyV2Requests(ents []*raftpb.Entry) []*raftpb.Entry {
	var out []*raftpb.Entry
	for _, e := range ents {
		if v2Request(e) {
			out = append(out, e)
		}
	}
	return out
}

// v2Request says an entry holds a request in the v2 form of etcd 3.4 and
// older (a bare etcdserverpb.Request),
// which the etcd server linked here no longer decodes: it panics on it.
// Such requests write only the v2 store (member attributes, the cluster
// version, keys of the v2 API), which a restore does not carry over: it
// writes the new member's own. Emptied, the entry keeps its index and term
// and applies as raft's own empty entries do, as nothing.
func v2Request(e *raftpb.Entry) bool {
	if e.GetType() != raftpb.EntryType_EntryNormal || len(e.GetData()) == 0 {
		return false
	}
	var r pb.InternalRaftRequest
	if err := proto.Unmarshal(e.GetData(), &r); err != nil {
		return true
	}
	return r.Header == nil && r.ID == 0
}

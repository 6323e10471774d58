package survey

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// WAL is what a data dir's write-ahead log holds, read with etcd's own
// WAL code the way etcd reads it when it starts.
type WAL struct {
	Dir      string `json:"dir"`
	Segments int    `json:"segments"`
	Bytes    int64  `json:"bytes"`
	// SnapshotIndex and SnapshotTerm are the raft snapshot (member/snap)
	// the read started from, 0 when there is none.
	SnapshotIndex uint64 `json:"snapshotIndex"`
	SnapshotTerm  uint64 `json:"snapshotTerm"`
	// Commit is the highest index the member knew committed (its saved
	// hard state); entries past it may be overwritten and are not kept by
	// a forced new cluster.
	Commit uint64 `json:"commit"`
	// Term is the member's current raft term.
	Term uint64 `json:"term"`
	// LastIndex and LastTerm are the newest entry in the log, committed
	// or not.
	LastIndex uint64 `json:"lastIndex"`
	LastTerm  uint64 `json:"lastTerm"`
	ClusterID ID     `json:"clusterID"`
	MemberID  ID     `json:"memberID"`
	// TornTail says the newest segment ends in a partly written record
	// (a crash during a write). etcd cuts it off when it starts; the
	// entries before it are what is counted here.
	TornTail string `json:"tornTail,omitempty"`

	entries []*raftpb.Entry
	// snapshotMembers are the member IDs the raft snapshot's
	// configuration holds.
	snapshotMembers []ID
}

// walLogger is etcd's logger for its WAL code; the survey prints its own lines.
var walLogger = zap.NewNop()

// readWAL reads member/wal from the newest raft snapshot that the WAL
// vouches for, like etcd at start, but only with files opened read-only:
// etcd's Snapshotter is not used because loading renames broken snapshot
// files and deletes leftover db.tmp files.
func readWAL(dataDir string, logf func(string, ...any), meter meterFunc) (w *WAL, err error) {
	defer func() {
		if p := recover(); p != nil { // etcd's Must* decoders panic on bad records
			w, err = nil, fmt.Errorf("WAL in %s is damaged: %v", dataDir, p)
		}
	}()
	w = &WAL{Dir: filepath.Join(dataDir, "member", "wal")}
	segs, err := segments(w.Dir)
	if err != nil {
		return nil, err
	}
	w.Segments = len(segs)
	for _, s := range segs {
		w.Bytes += s.size
	}

	walSnaps, err := wal.ValidSnapshotEntries(walLogger, w.Dir)
	if err != nil {
		return nil, fmt.Errorf("WAL %s is damaged: %w (etcd refuses to start from it)", w.Dir, err)
	}
	start := &walpb.Snapshot{}
	if s := newestRaftSnapshot(filepath.Join(dataDir, "member", "snap"), walSnaps, logf); s != nil {
		start.Index, start.Term = new(s.Metadata.GetIndex()), new(s.Metadata.GetTerm())
		w.SnapshotIndex, w.SnapshotTerm = s.Metadata.GetIndex(), s.Metadata.GetTerm()
		cs := s.Metadata.GetConfState()
		for _, id := range append(cs.GetVoters(), cs.GetLearners()...) {
			w.snapshotMembers = append(w.snapshotMembers, ID(id))
		}
	}

	// The newest segment alone first: where its records end (etcd
	// preallocates it, and its reader stops there) and whether the last
	// one is torn.
	newest := filepath.Join(w.Dir, segs[len(segs)-1].name)
	newestEnd, torn := recordsEnd(newest)

	logf("  reading WAL %s: %d segment(s), %s, from raft snapshot index %d", w.Dir, w.Segments, humanBytes(w.Bytes), w.SnapshotIndex)
	before := walFDs(w.Dir)
	r, err := wal.OpenForRead(walLogger, w.Dir, start)
	if err != nil {
		return nil, fmt.Errorf("open WAL %s: %w", w.Dir, err)
	}
	defer r.Close()
	var (
		metadata []byte
		state    *raftpb.HardState
	)
	readAll := func() error {
		var err error
		metadata, state, w.entries, err = r.ReadAll()
		return err
	}
	if fds, total := newFDs(before, walFDs(w.Dir)); len(fds) > 0 {
		// The total is what the reader reads: the segments it opened
		// (from the raft snapshot's on), the newest up to where its
		// records end. Its buffer reads a little past that: done is
		// kept within the total, and it closes the files at its end,
		// when the last offsets can no longer be read: a read that
		// succeeded has read the total.
		for _, fd := range fds {
			if fd.name == filepath.Base(newest) && newestEnd >= 0 {
				total += newestEnd - fd.size
			}
		}
		m := meter("  read WAL "+w.Dir, total)
		defer m.Finish()
		var read int64
		err = m.Follow(func() int64 { read = min(total, max(read, readOffset(fds))); return read }, readAll)
		if err == nil {
			m.Set(total, 0)
		}
	} else {
		// Without /proc nothing tells how far etcd's reader got.
		err = withProgress(logf, "reading WAL "+w.Dir, readAll)
	}
	if err != nil {
		return nil, fmt.Errorf("WAL %s is damaged: %w (etcd refuses to start from it)", w.Dir, err)
	}

	var md pb.Metadata
	if err := proto.Unmarshal(metadata, &md); err != nil {
		return nil, fmt.Errorf("WAL %s metadata: %w", w.Dir, err)
	}
	w.ClusterID, w.MemberID = ID(md.GetClusterID()), ID(md.GetNodeID())
	w.Commit, w.Term = state.GetCommit(), state.GetTerm()
	w.LastIndex, w.LastTerm = w.SnapshotIndex, w.SnapshotTerm
	if n := len(w.entries); n > 0 {
		w.LastIndex, w.LastTerm = w.entries[n-1].GetIndex(), w.entries[n-1].GetTerm()
	}
	w.TornTail = torn
	return w, nil
}

// TermAt is the term of the entry at index i, or 0 when the log does not
// hold it.
func (w *WAL) TermAt(i uint64) uint64 {
	if i == w.SnapshotIndex {
		return w.SnapshotTerm
	}
	if e := w.entry(i); e != nil {
		return e.GetTerm()
	}
	return 0
}

func (w *WAL) entry(i uint64) *raftpb.Entry {
	if len(w.entries) == 0 || i < w.entries[0].GetIndex() {
		return nil
	}
	if off := i - w.entries[0].GetIndex(); off < uint64(len(w.entries)) {
		return w.entries[off]
	}
	return nil
}

type segment struct {
	name string
	size int64
}

func segments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("WAL: %w", err)
	}
	var out []segment
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".wal") {
			continue
		}
		info, err := de.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, segment{de.Name(), info.Size()})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("WAL %s holds no segments", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// newestRaftSnapshot is the newest snapshot file in snapDir that the WAL
// records, as etcd's Snapshotter.LoadNewestAvailable picks it. Broken
// snapshot files are skipped (and named), as etcd skips them.
func newestRaftSnapshot(snapDir string, walSnaps []*walpb.Snapshot, logf func(string, ...any)) *raftpb.Snapshot {
	names, _ := filepath.Glob(filepath.Join(snapDir, "*.snap"))
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	for _, name := range names {
		s, err := snap.Read(walLogger, name)
		if err != nil {
			logf("  raft snapshot %s is broken (%v): etcd skips it, and so does the survey", name, err)
			continue
		}
		for _, ws := range walSnaps {
			if ws.GetIndex() == s.Metadata.GetIndex() && ws.GetTerm() == s.Metadata.GetTerm() {
				logf("  raft snapshot %s: index %d, term %d", name, s.Metadata.GetIndex(), s.Metadata.GetTerm())
				return s
			}
		}
	}
	return nil
}

// recordsEnd decodes the newest segment alone and says where its records
// end (its reader stops there; etcd preallocates the rest), -1 when it
// cannot be read, and where its last record is cut short, "" when it ends
// cleanly. A segment starts with a CRC record, so it can be checked on
// its own.
func recordsEnd(path string) (end int64, torn string) {
	f, err := os.Open(path)
	if err != nil {
		return -1, ""
	}
	defer f.Close()
	d := wal.NewDecoder(fileutil.NewFileReader(f))
	rec := &walpb.Record{}
	for {
		err := d.Decode(rec)
		switch {
		case err == nil:
			if rec.GetType() == wal.CrcType { // chain the checksum as etcd does
				d.UpdateCRC(rec.GetCrc())
			}
			continue
		case errors.Is(err, io.ErrUnexpectedEOF):
			return d.LastOffset(), fmt.Sprintf("%s is cut short after byte %d", filepath.Base(path), d.LastOffset())
		case errors.Is(err, io.EOF):
			return d.LastOffset(), ""
		}
		return -1, ""
	}
}

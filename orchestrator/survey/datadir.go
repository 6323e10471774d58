package survey

import (
	"fmt"
	"os"
	"path/filepath"
)

// readDataDir reads a survivor's data dir: its backend (what is applied)
// and its WAL (what is committed, applied or not). What a restore from it
// keeps is every committed entry the WAL holds.
func readDataDir(dir string, logf func(string, ...any), meter meterFunc) *Source {
	s := &Source{Kind: DataDir, Path: dir}
	logf("data dir %s:", dir)
	if _, err := os.Stat(dir); err != nil {
		s.Error = fmt.Sprintf("data dir: %v", err)
		logf("  %s", s.Error)
		return s
	}
	if st, err := os.Stat(filepath.Join(dir, "member")); err != nil || !st.IsDir() {
		s.Error = fmt.Sprintf("%s holds no etcd member folder (member/): is it a data dir?", dir)
		logf("  %s", s.Error)
		return s
	}

	dbPath := filepath.Join(dir, "member", "snap", "db")
	// No meter here: the backend read touches a handful of pages (the
	// meta pages, the path to the newest key, the members; bbolt loads no
	// freelist read-only), not the file, and takes milliseconds whatever
	// its size: a meter sized by the file would only jump to its end.
	logf("  reading backend %s (read-only)", dbPath)
	b, err := readBackend(dbPath)
	if err != nil {
		s.Error = "backend: " + err.Error()
		logf("  %s", s.Error)
	} else {
		s.Backend, s.Revision, s.Members, s.Version = b, b.Revision, b.Members, b.Version()
		s.Index, s.Term = b.ConsistentIndex, b.Term
		logf("  backend: revision %d, applied raft index %d, %d members recorded", b.Revision, b.ConsistentIndex, len(b.Members))
	}

	w, err := readWAL(dir, logf, meter)
	if err != nil {
		s.Error = join(s.Error, err.Error())
		logf("  %s", err)
		finishRevision(s)
		return s
	}
	s.WAL, s.ClusterID, s.MemberID = w, w.ClusterID, w.MemberID
	logf("  WAL: cluster %s, member %s, last entry %d (term %d), committed %d", w.ClusterID, w.MemberID, w.LastIndex, w.LastTerm, w.Commit)
	if w.TornTail != "" {
		s.Notes = append(s.Notes, "torn WAL tail: "+w.TornTail+"; etcd drops the partial record when it starts, and so does this count")
	}
	if b == nil { // the backend is damaged: show how far the log got
		s.Index = min(w.Commit, w.LastIndex)
		s.Term = w.TermAt(s.Index)
		return s
	}
	addWAL(s, b, w, logf)
	return s
}

// addWAL adds to what the backend applied what the WAL committed beyond
// it. A forced new cluster keeps the committed entries the log holds (and
// never less than what the backend already applied); entries past the
// commit index the member saved are dropped.
func addWAL(s *Source, b *Backend, w *WAL, logf func(string, ...any)) {
	committed := max(min(w.Commit, w.LastIndex), b.ConsistentIndex)
	if b.ConsistentIndex < w.SnapshotIndex {
		s.Notes = append(s.Notes, fmt.Sprintf("the backend (index %d) is behind the raft snapshot (index %d): entries in between are not in the WAL", b.ConsistentIndex, w.SnapshotIndex))
	}
	s.Index = committed
	if t := w.TermAt(committed); t != 0 {
		s.Term = t
	}
	s.InWAL = w.writesBetween(b.ConsistentIndex, committed)
	s.Members = w.members(b.Members, b.ConsistentIndex, committed)
	if v := w.clusterVersion(b.ConsistentIndex, committed); v != "" && b.StorageVersion == "" {
		s.Version = v
	}
	if committed > b.ConsistentIndex {
		logf("  %d committed entries in the WAL are not in the backend yet: %d writes, %d more that may write", committed-b.ConsistentIndex, s.InWAL.Certain, s.InWAL.Possible)
	}
	if w.LastIndex > committed {
		s.Uncommitted = w.writesBetween(committed, w.LastIndex)
		s.Notes = append(s.Notes, fmt.Sprintf("the WAL holds %d entries after index %d not known to be committed (%d writes): a plain forced new cluster (etcd --force-new-cluster) drops them, etcd-rescue restore --from-data-dir keeps them",
			w.LastIndex-committed, committed, s.Uncommitted.Certain+s.Uncommitted.Possible))
	}
	finishRevision(s)
}

func finishRevision(s *Source) {
	s.RevisionAtLeast = s.Revision + int64(s.InWAL.Certain)
	s.RevisionAtMost = s.RevisionAtLeast + int64(s.InWAL.Possible+s.Uncommitted.Certain+s.Uncommitted.Possible)
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

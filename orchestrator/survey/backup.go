package survey

import (
	"os"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
)

// readBackup verifies a backup (a snapshot file, a backup file or a folder
// holding backups, of which the newest is taken) the way a restore does,
// and reads how far its snapshot got.
func readBackup(path, workDir string, logf func(string, ...any), meter meterFunc) *Source {
	s := &Source{Kind: Backup, Path: path}
	logf("backup %s:", path)
	set, err := backup.FindWith(path, backup.FindOptions{AllowSnapshotOnly: true})
	if err != nil {
		s.Error = err.Error()
		logf("  %s", s.Error)
		return s
	}
	if workDir == "" && set.Form == backup.SingleFile {
		d, err := os.MkdirTemp("", "etcd-rescue-survey-")
		if err != nil {
			s.Error = err.Error()
			return s
		}
		defer os.RemoveAll(d)
		workDir = d
	}
	logf("  verifying %s (sha256 trailer, bbolt's check, etcd's status)", firstNonEmpty(set.Snapshot, set.Resources))
	var rep *backup.Report
	m := meter("  verify "+filepath.Base(path), 0) // Verify gives the total
	err = guard(func() error {
		var err error
		rep, err = backup.Verify(set, backup.Options{SkipHashCheck: true, WorkDir: workDir, Progress: m.Func()})
		return err
	})
	m.Finish()
	if err != nil {
		s.Error = err.Error()
		logf("  %s", s.Error)
		return s
	}
	s.Path = set.Snapshot
	if set.Form == backup.SingleFile {
		s.Path = set.Resources
	}
	s.Hash = "no sha256 trailer"
	if rep.Snapshot.HasHash {
		s.Hash = "sha256 ok"
	}
	s.Revision = rep.Snapshot.Status.Revision
	b, err := readBackend(set.Snapshot)
	if err != nil {
		s.Error = err.Error()
		logf("  %s", s.Error)
		return s
	}
	s.Backend, s.Members, s.Version = b, b.Members, b.Version()
	s.Index, s.Term = b.ConsistentIndex, b.Term
	s.Revision = max(s.Revision, b.Revision)
	s.Notes = append(s.Notes, rep.Warnings...)
	finishRevision(s)
	logf("  snapshot: %s, revision %d, applied raft index %d", s.Hash, s.Revision, s.Index)
	return s
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

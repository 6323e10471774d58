package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// Names inside the data dir that belong to the filesystem or to this tool
// and are never moved as "old data".
const (
	stagingPrefix = ".etcd-rescue-restore-"
	keptPrefix    = "etcd-rescue-kept-"
)

func (r *restore) keepOldStateStep() steps.Step {
	return steps.Step{
		Name: "keep-old-state",
		Describe: func() string {
			return fmt.Sprintf("move the old data dir %s aside to %s and copy the etcd manifest and certificates there",
				r.abs(r.prof.DataDir), r.keptDataDirTarget())
		},
		Check: func(context.Context) (steps.State, error) {
			if r.restoreCommitted() {
				return steps.Done, nil
			}
			if r.j.StepDone("keep-old-state") && len(r.oldEntries()) == 0 {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error { return r.keepOldState() },
	}
}

// keptDataDirTarget is where the old data dir's contents go: the run's
// backup folder when it is on the same filesystem (a rename, instant and
// atomic), else a folder inside the data dir itself (a data dir that is a
// mount point: its contents move, the mount stays).
func (r *restore) keptDataDirTarget() string {
	if k := r.j.Notes["keptDataDir"]; k != "" {
		return k
	}
	dataDir := r.abs(r.prof.DataDir)
	backupRoot := filepath.Join(r.o.Root, journal.Dir)
	if sameDevice(dataDir, nearestExisting(backupRoot)) {
		return filepath.Join(r.j.BackupDir(r.o.Root), r.prof.DataDir)
	}
	return filepath.Join(dataDir, keptPrefix+r.j.RunID)
}

// oldEntries lists what in the data dir is old data still to be moved.
func (r *restore) oldEntries() []string {
	entries, err := os.ReadDir(r.abs(r.prof.DataDir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if n == "lost+found" || strings.HasPrefix(n, stagingPrefix) || strings.HasPrefix(n, keptPrefix) {
			continue
		}
		out = append(out, n)
	}
	return out
}

func (r *restore) keepOldState() error {
	dataDir := r.abs(r.prof.DataDir)
	if err := checkNotRunning(dataDir); err != nil {
		return err
	}
	if err := r.j.Note("backupFile", r.backupFile); err != nil {
		return err
	}
	st, err := os.Stat(dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(r.out, "    %s does not exist: no old data to keep\n", dataDir)
		if err := r.j.Note("dataDirMode", "0700"); err != nil {
			return err
		}
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s is not a folder: move it aside by hand and re-run", dataDir)
	default:
		if r.j.Notes["dataDirMode"] == "" {
			s := st.Sys().(*syscall.Stat_t)
			r.j.Notes["dataDirUID"] = strconv.Itoa(int(s.Uid))
			r.j.Notes["dataDirGID"] = strconv.Itoa(int(s.Gid))
			r.j.Notes["dataDirMode"] = strconv.FormatUint(uint64(st.Mode().Perm()), 8)
		}
	}
	target := r.keptDataDirTarget()
	if err := r.j.Note("keptDataDir", target); err != nil {
		return err
	}
	if entries := r.oldEntries(); len(entries) > 0 {
		if err := os.MkdirAll(target, 0o700); err != nil {
			return err
		}
		for _, n := range entries {
			from, to := filepath.Join(dataDir, n), filepath.Join(target, n)
			if err := os.Rename(from, to); err != nil {
				return fmt.Errorf("move %s aside: %w", from, err)
			}
			fmt.Fprintf(r.out, "    moved %s -> %s\n", from, to)
		}
		if err := atomicfile.SyncDir(dataDir); err != nil {
			return err
		}
		if err := atomicfile.SyncDir(target); err != nil {
			return err
		}
		if err := r.j.AddKept(journal.Kept{From: dataDir, To: target, How: "moved"}); err != nil {
			return err
		}
	}
	// The manifest, its environment file and the certificates stay in use;
	// copies record what they were before the rewrite.
	for _, rel := range []string{r.prof.Manifest, r.prof.EnvFile, r.prof.CertDir} {
		if rel == "" {
			continue
		}
		from := r.abs(rel)
		if rel == r.prof.Manifest {
			from = r.manifestPath() // an online restore has it stopped
		}
		if _, err := os.Lstat(from); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		to := filepath.Join(r.j.BackupDir(r.o.Root), rel)
		if err := copyTree(from, to); err != nil {
			return fmt.Errorf("keep a copy of %s: %w", from, err)
		}
		fmt.Fprintf(r.out, "    copied %s -> %s\n", from, to)
		if err := r.j.AddKept(journal.Kept{From: from, To: to, How: "copied"}); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies a file or folder, keeping modes, owners and symlinks.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(dst, info.Mode().Perm()|0o700); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(dst)
			if err := os.Symlink(link, dst); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			if err := atomicfile.CopyFile(p, dst, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil
		}
		if s, ok := info.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			os.Lchown(dst, int(s.Uid), int(s.Gid))
		}
		return nil
	})
}

func sameDevice(a, b string) bool {
	var sa, sb syscall.Stat_t
	if syscall.Stat(a, &sa) != nil || syscall.Stat(b, &sb) != nil {
		return true // a missing data dir: nothing to move, any target works
	}
	return sa.Dev == sb.Dev
}

func nearestExisting(p string) string {
	for {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := parentDir(p)
		if parent == p {
			return p
		}
		p = parent
	}
}

func parentDir(p string) string { return filepath.Dir(p) }

// checkNotRunning refuses to touch a data dir an etcd is running on.
func checkNotRunning(dataDir string) error {
	busy, err := etcddata.InUse(etcddata.DBPath(dataDir))
	if err != nil {
		return err
	}
	if busy {
		return fmt.Errorf("etcd is running on %s (it holds the lock of member/snap/db): stop it first, or restore with --online on a live master", dataDir)
	}
	return nil
}

// Package keep moves a master's old state out of the way into the run's
// backup folder instead of deleting it. Every move is recorded in the
// journal before it is made, so a run that crashes in the middle finishes
// the move when it runs again, and an undo knows where each path went.
package keep

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
)

const (
	// KeptPrefix names the folder, inside a data dir on a filesystem of its
	// own, that receives the data dir's old contents.
	KeptPrefix = "etcd-rescue-kept-"
	// ScratchPrefix starts the names of a run's own scratch folders inside a
	// folder it keeps (restore's staging folder): they are never old state.
	ScratchPrefix = ".etcd-rescue-"
)

// Keeper keeps paths of one root aside for one run.
type Keeper struct {
	// Root is the master's root; the backup folder is in it.
	Root string
	// Journal records each move; its run ID names the backup folder.
	Journal *journal.Journal
	// Out receives one line per move or copy; nil prints nothing.
	Out io.Writer
}

// Backup is where a path (relative to the root) goes in the run's backup folder.
func (k *Keeper) Backup(rel string) string {
	return filepath.Join(k.Journal.BackupDir(k.Root), rel)
}

// Where returns where a path was kept by this run, or "".
func (k *Keeper) Where(from string) string {
	if r, ok := k.Journal.KeptAt(from); ok {
		return r.To
	}
	return ""
}

func (k *Keeper) printf(format string, args ...any) {
	if k.Out != nil {
		fmt.Fprintf(k.Out, format, args...)
	}
}

// Move renames from to to. A folder that cannot be renamed (a mount point,
// or to is on another filesystem) has its contents moved instead. Once
// from is gone and to exists, Move does nothing.
func (k *Keeper) Move(from, to string) error {
	if _, err := os.Lstat(from); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Lstat(to); err == nil {
			return nil // moved by an earlier attempt
		}
		return fmt.Errorf("keep %s aside: it does not exist", from)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return err
	}
	if err := k.Journal.AddKept(journal.Kept{From: from, To: to, How: journal.Moved}); err != nil {
		return err
	}
	err := os.Rename(from, to)
	if err == nil {
		k.printf("    moved %s -> %s\n", from, to)
		return atomicfile.SyncDir(filepath.Dir(to))
	}
	if fi, serr := os.Stat(from); serr == nil && fi.IsDir() {
		return k.moveEntries(from, to, journal.Moved)
	}
	return fmt.Errorf("move %s aside to %s: %w", from, to, err)
}

// Entries lists what in a folder is old state: everything but lost+found
// and this tool's own folders. A missing folder has none.
func Entries(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if n == "lost+found" || strings.HasPrefix(n, ScratchPrefix) || strings.HasPrefix(n, KeptPrefix) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// ContentsTarget is where MoveContents puts the contents of dir (the
// folder rel of the root): where an earlier attempt of this run put them;
// else the backup folder when it is on the same filesystem (a rename,
// instant and atomic); else a folder inside dir itself (a data dir that is
// a mount point: its contents move, the mount stays). A symlink is
// followed: the link stays and its target's contents move.
func (k *Keeper) ContentsTarget(dir, rel string) string {
	if r, ok := k.Journal.KeptAt(dir); ok && r.How == journal.MovedContents {
		return r.To
	}
	if sameDevice(dir, NearestExisting(journal.DirIn(k.Root))) {
		return k.Backup(rel)
	}
	return filepath.Join(dir, KeptPrefix+k.Journal.RunID)
}

// MoveContents moves the entries of dir (the folder rel of the root) to
// ContentsTarget, leaving dir itself, its mode and owner in place. It
// returns the target.
func (k *Keeper) MoveContents(dir, rel string) (string, error) {
	to := k.ContentsTarget(dir, rel)
	if len(Entries(dir)) == 0 {
		return to, nil
	}
	return to, k.moveEntries(dir, to, journal.MovedContents)
}

func (k *Keeper) moveEntries(dir, to, how string) error {
	names := Entries(dir)
	slices.Sort(names)
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	if err := k.Journal.AddKept(journal.Kept{From: dir, To: to, How: how, Entries: names}); err != nil {
		return err
	}
	for _, n := range names {
		from := filepath.Join(dir, n)
		if err := os.Rename(from, filepath.Join(to, n)); err != nil {
			return fmt.Errorf("move %s aside to %s: %w", from, to, err)
		}
		k.printf("    moved %s -> %s\n", from, filepath.Join(to, n))
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	return atomicfile.SyncDir(to)
}

// Copy copies a file or folder (modes, owners and symlinks kept) to to:
// for what stays in use but is about to be rewritten.
func (k *Keeper) Copy(from, to string) error {
	if err := k.Journal.AddKept(journal.Kept{From: from, To: to, How: journal.Copied}); err != nil {
		return err
	}
	if err := copyTree(from, to); err != nil {
		return fmt.Errorf("keep a copy of %s: %w", from, err)
	}
	k.printf("    copied %s -> %s\n", from, to)
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
		return true // a missing folder: nothing to move, any target works
	}
	return sa.Dev == sb.Dev
}

// NearestExisting returns p or its closest existing parent: the folder
// whose filesystem a path that does not exist yet will land on.
func NearestExisting(p string) string {
	for {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		p = parent
	}
}

package keep

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// BeforeWrite readies path (a host path in the root, symlinks in its
// folders already resolved) for a write by this run: a file or link there
// that is not the run's own moves to the backup folder; a path with
// nothing there is recorded as created. Both are journaled before anything
// is written, so an undo finds each one, and calling it again after a
// crash, or after the write, changes nothing:
//
//   - recorded as created: the file there, if any, is the run's own;
//   - recorded as kept and its kept copy exists: what is there is the
//     run's own write (or nothing yet);
//   - otherwise whatever is there is old state and moves aside.
func (k *Keeper) BeforeWrite(path string) error {
	if k.Journal.IsCreated(path) {
		return nil
	}
	kept, wasKept := k.Journal.KeptAt(path)
	if wasKept && exists(kept.To) {
		return nil
	}
	if !exists(path) {
		if wasKept {
			return fmt.Errorf("%s was recorded as kept at %s, but neither is there: move back what you moved by hand and re-run", path, kept.To)
		}
		return k.Journal.AddCreated(path)
	}
	rel, err := (&rootfs.Root{Path: k.Root}).Rel(path)
	if err != nil {
		return err
	}
	return k.Move(path, k.Backup(rel))
}

// Replace writes data to path (see BeforeWrite) atomically: the old file,
// if any, is kept aside first, or the new one is recorded as created. A
// file that already holds data is left as it is.
func (k *Keeper) Replace(path string, data []byte, mode os.FileMode) error {
	if have, err := os.ReadFile(path); err == nil && string(have) == string(data) {
		return nil
	}
	if err := k.BeforeWrite(path); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, data, mode); err != nil {
		return err
	}
	k.printf("    wrote %s\n", path)
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

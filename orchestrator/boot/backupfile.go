package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// ErrBackupReadOnly is returned by Env.WriteBesideBackup when the backup
// volume cannot be written: a read-only device (a write-protected stick, a
// disk attached read-only), or a backup on the master's root, which a role
// without WritableRoot never changes.
var ErrBackupReadOnly = errors.New("the backup volume is read-only")

// writeBesideBackup writes one new file into the backup folder. The backup
// volume stays mounted read-only for the role: for this one write it is
// unmounted and mounted read-write (a read-only mount skipped the journal
// replay, so it cannot just be remounted), the file is written and synced
// under a temporary name and renamed, and the volume is unmounted and
// mounted read-only again. An existing file is never replaced. It returns
// the file's path.
func (m *Machine) writeBesideBackup(env *Env, name string, data []byte) (string, error) {
	if err := rootfs.CheckName(name); err != nil {
		return "", fmt.Errorf("file name %q: %w", name, err)
	}
	mt, ok := m.mountedAt(MountBackup)
	if !ok {
		return "", fmt.Errorf("%w: the backup is on the master's root, which this role does not change", ErrBackupReadOnly)
	}
	fs, err := ProbeFS(mt.dev)
	if err != nil {
		return "", fmt.Errorf("backup volume %s: %w", mt.dev, err)
	}
	d := disk{name: filepath.Base(mt.dev), dev: mt.dev, fs: fs}
	path := filepath.Join(env.Backup, name)
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("%s exists already: not replaced", path)
	}
	if err := m.unmount(MountBackup); err != nil {
		return "", fmt.Errorf("unmount the backup volume to write %s: %w", name, err)
	}
	werr := m.writeOnVolume(d, path, data)
	// The role goes on with the backup mounted as it was.
	if err := m.mount(d, MountBackup, false); err != nil {
		return "", errors.Join(werr, fmt.Errorf("mount the backup volume %s read-only again: %w", d, err))
	}
	if werr != nil {
		return "", werr
	}
	return path, nil
}

// writeOnVolume mounts d read-write on MountBackup, writes path and
// unmounts it again.
func (m *Machine) writeOnVolume(d disk, path string, data []byte) error {
	if err := m.mount(d, MountBackup, true); err != nil {
		return fmt.Errorf("%w (%s cannot be mounted read-write: %v)", ErrBackupReadOnly, d, err)
	}
	werr := writeNew(path, data)
	if m.Sync != nil {
		m.Sync()
	}
	if err := m.unmount(MountBackup); err != nil {
		return errors.Join(werr, err)
	}
	return werr
}

// writeNew writes a new file under a temporary name, syncs it, renames it
// to its name and syncs its folder, so a power loss leaves the whole file
// or none (the caller checked that the name is free).
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	_ = f.Chmod(0o644) // best effort: vfat has no file modes
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	df, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer df.Close()
	return df.Sync()
}

func (m *Machine) mountedAt(target string) (mounted, bool) {
	for _, mt := range m.mounts {
		if mt.target == target {
			return mt, true
		}
	}
	return mounted{}, false
}

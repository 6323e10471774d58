package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
)

// checkInputs checks, before any step runs, everything the steps will read
// or rewrite, so a bad input is refused with the root unchanged instead of
// failing after the old data was moved aside: every path resolves inside
// the root, the manifest is a Pod with an etcd container and the rewrite
// applies to it (and to the environment file), the data dir is the one the
// manifest gives etcd, and the backup is not inside anything the restore
// moves or rewrites. A dry run runs the same checks.
func (r *restore) checkInputs() error {
	if _, err := manifest.Load(r.manifestPath()); err != nil {
		return fmt.Errorf("%w: repair the manifest (or put back the one kept by an earlier run) and re-run", err)
	}
	if err := r.useManifestDataDir(); err != nil {
		return err
	}
	for _, rel := range []string{r.prof.DataDir, r.prof.Manifest, r.prof.ManifestDir, r.prof.EnvFile,
		r.prof.CertDir, r.prof.StaticPodResources, r.prof.ResourcesBase, journal.Dir} {
		if rel == "" {
			continue
		}
		if _, err := r.root.Resolve(rel); err != nil {
			return fmt.Errorf("%w: fix the symlinks on the master's root and re-run", err)
		}
	}
	if _, _, err := r.rewritten(); err != nil {
		return fmt.Errorf("the etcd manifest cannot be rewritten for the restored member: %w", err)
	}
	check := r.checkBackupOutside
	if r.fromSurvivor() {
		check = r.checkSurvivorOutside
	}
	if err := check(); err != nil {
		return err
	}
	r.readOldData()
	return nil
}

// useManifestDataDir makes the data dir the one etcd really uses (see
// manifest.DataDirOnHost); only when the manifest names none is the
// profile's default kept.
func (r *restore) useManifestDataDir() error {
	m, err := manifest.Load(r.manifestPath())
	if err != nil {
		return err
	}
	rel, why, err := m.DataDirOnHost(r.root.Path, r.member.Host, r.prof.DataDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.out, "    data dir: /%s (%s)\n", rel, why)
	r.prof.DataDir = rel
	return nil
}

// checkBackupOutside refuses a backup that lies inside a folder the restore
// moves aside or rewrites: it would be moved away under itself.
func (r *restore) checkBackupOutside() error {
	b, err := filepath.Abs(r.o.BackupDir)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(b); err == nil {
		b = real
	}
	for _, rel := range []string{r.prof.DataDir, r.prof.ManifestDir, r.prof.CertDir, r.prof.StaticPodResources} {
		if rel == "" {
			continue
		}
		dir := r.abs(rel)
		if b == dir || strings.HasPrefix(b, dir+string(filepath.Separator)) {
			return fmt.Errorf("the backup %s is inside %s, which the restore moves aside or rewrites: copy the backup somewhere else (another disk, or outside that folder) and pass that with --backup",
				r.o.BackupDir, dir)
		}
	}
	return nil
}

// readOldData reads the old data dir once, defensively: a damaged backend
// or one that is not etcd's is not an error, it only means the revision
// bump cannot be computed (the default is used and the reason printed).
func (r *restore) readOldData() {
	if _, err := r.root.Lstat(r.prof.DataDir); errors.Is(err, fs.ErrNotExist) {
		return
	}
	if _, _, err := r.oldDataWithErr(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.oldDataErr = err
		fmt.Fprintf(r.out, "    old data dir: unreadable (%v): the revision bump falls back to the default\n", err)
	}
}

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
	if err := r.checkBackupOutside(); err != nil {
		return err
	}
	r.readOldData()
	return nil
}

// discoveredPlaceholders stand for what OpenShift's discovery writes.
const discoveredPlaceholders = "ETCD_IPV4_ADDRESS=192.0.2.1\nETCD_DNS_NAME=etcd.invalid\nETCD_WILDCARD_DNS_NAME=*.invalid\n"

// useManifestDataDir makes the data dir the one etcd really uses: its last
// --data-dir (or ETCD_DATA_DIR), mapped through the pod's hostPath volumes.
// Only when the manifest names none is the profile's default kept.
func (r *restore) useManifestDataDir() error {
	m, err := manifest.Load(r.manifestPath())
	if err != nil {
		return err
	}
	// OpenShift's discovery init container writes /run/etcd/environment at
	// start: the node's IP and DNS names, which never bear on the data dir.
	inv, err := m.Invocation(manifest.Runtime{Root: r.root.Path, NodeName: r.member.Host,
		Files: map[string]string{"/run/etcd/environment": discoveredPlaceholders}})
	if err != nil {
		fmt.Fprintf(r.out, "    data dir: /%s (the profile's; the manifest's etcd command line could not be read: %v)\n", r.prof.DataDir, err)
		return nil
	}
	dd := inv.Flags()["data-dir"]
	if dd == "" {
		fmt.Fprintf(r.out, "    data dir: /%s (the profile's; the manifest gives etcd no --data-dir)\n", r.prof.DataDir)
		return nil
	}
	host, ok := inv.HostPath("/", dd)
	if !ok {
		return fmt.Errorf("the etcd manifest %s gives etcd --data-dir %s, which no hostPath volume of the pod holds: etcd's data would not be on the master's disk; fix the manifest and re-run",
			r.manifestPath(), dd)
	}
	rel := strings.TrimPrefix(filepath.Clean(host), "/")
	if rel == "" {
		return fmt.Errorf("the etcd manifest %s puts etcd's data dir (%s) at the master's root folder: refusing to move the whole root aside", r.manifestPath(), dd)
	}
	fmt.Fprintf(r.out, "    data dir: /%s (the manifest's --data-dir %s)\n", rel, dd)
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

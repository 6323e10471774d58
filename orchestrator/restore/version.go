package restore

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcdversion"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
)

// checkEtcdVersion finds the etcd version the master runs and refuses one
// whose server may not open the restored data dir, or a backup written by
// a newer etcd, before anything is touched.
func (r *restore) checkEtcdVersion() error {
	server, source := r.serverVersion()
	written := r.backupWrittenBy()
	if server == nil {
		fmt.Fprintf(r.out, "    etcd version: unknown (%s); restores are tested for etcd %s: pass --etcd-version to have it checked\n", source, etcdversion.Range())
		return nil
	}
	line := fmt.Sprintf("    etcd version: %s (%s)", server, source)
	if written != nil {
		line += fmt.Sprintf("; backup written by etcd %s", written.MinorString())
	}
	fmt.Fprintln(r.out, line)
	if err := etcdversion.Check(*server); err != nil {
		return err
	}
	if written != nil {
		return etcdversion.CheckBackup(*server, *written)
	}
	return nil
}

// serverVersion is the version the restored member will run: --etcd-version,
// else the manifest's image tag, else what the old data dir records. When
// it is unknown, source says why.
func (r *restore) serverVersion() (*etcdversion.Version, string) {
	if r.o.EtcdVersion != "" {
		v, _ := etcdversion.Parse(r.o.EtcdVersion) // checked in newRestore
		return &v, "from --etcd-version"
	}
	image := ""
	if m, err := manifest.Load(r.manifestPath()); err == nil {
		image = m.EtcdContainer().Image
		if v, ok := etcdversion.FromImage(image); ok {
			return &v, "from the manifest's image " + image
		}
	}
	if info, dir := r.oldData(); info != nil && info.WrittenBy() != "" {
		if v, err := etcdversion.Parse(info.WrittenBy()); err == nil {
			return &v, "recorded in the old data dir " + dir
		}
	}
	if image == "" {
		return nil, "no etcd image in " + r.prof.Manifest + " and no version in the old data dir"
	}
	return nil, "the image " + image + " has no version tag and the old data dir records none"
}

// backupWrittenBy is the etcd version the snapshot records (3.5+), or nil.
func (r *restore) backupWrittenBy() *etcdversion.Version {
	if r.fromSurvivor() {
		return r.survivorWrittenBy()
	}
	db := r.set.Snapshot
	if db == "" { // a single-file backup staged in one pass: read the staged copy
		db = r.staged
	}
	info, err := etcddata.Read(db)
	if err != nil {
		return nil
	}
	if v, err := etcdversion.Parse(info.WrittenBy()); err == nil {
		return &v
	}
	return nil
}

// oldData reads the master's previous data dir where it is: in place, or
// kept aside by an earlier attempt of this run. It returns nil when
// neither holds a readable backend.
func (r *restore) oldData() (*etcddata.Info, string) {
	info, dir, _ := r.oldDataWithErr()
	return info, dir
}

// oldDataWithErr is oldData with the error of the first place that has a
// backend but cannot be read.
func (r *restore) oldDataWithErr() (*etcddata.Info, string, error) {
	dirs := []string{r.abs(r.prof.DataDir)}
	if kept := r.j.Notes["keptDataDir"]; kept != "" {
		dirs = append(dirs, kept)
	}
	var first error
	for _, dir := range dirs {
		info, err := etcddata.Read(etcddata.DBPath(dir))
		if err == nil {
			return info, dir, nil
		}
		if first == nil || errors.Is(first, fs.ErrNotExist) {
			first = err
		}
	}
	return nil, "", first
}

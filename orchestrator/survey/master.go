package survey

import (
	"fmt"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// MasterDataDir finds the data dir etcd uses on a master's root (mounted
// at root): the etcd manifest's --data-dir mapped through its hostPath
// volumes (manifest.DataDirOnHost), resolved in the root as the master
// sees it. prof nil means detect the layout; nodeName is the master's node
// name (the manifest's start script may use it). A manifest that cannot be
// read leaves the profile's data dir, and why says so: the survey then
// reports what it finds there. rel is the path as the master sees it.
func MasterDataDir(root string, prof *profile.Profile, nodeName string) (dir, rel, why string, err error) {
	r, err := rootfs.Open(root)
	if err != nil {
		return "", "", "", err
	}
	if prof == nil {
		if prof, err = profile.DetectIn(r); err != nil {
			return "", "", "", err
		}
	}
	rel, why = prof.DataDir, "the "+prof.Name+" profile's"
	mpath, err := r.Resolve(prof.Manifest)
	if err != nil {
		return "", "", "", err
	}
	if m, lerr := manifest.Load(mpath); lerr != nil {
		why = fmt.Sprintf("the %s profile's; %v", prof.Name, lerr)
	} else if rel, why, err = m.DataDirOnHost(r.Path, nodeName, prof.DataDir); err != nil {
		return "", "", "", err
	}
	if dir, err = r.Resolve(rel); err != nil {
		return "", "", "", fmt.Errorf("data dir /%s on the master's root: %w", rel, err)
	}
	return dir, rel, why, nil
}

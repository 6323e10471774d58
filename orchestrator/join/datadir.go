package join

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// dataDirNote records the data dir a run chose: the join moves the manifest
// that named it aside, so a resumed run cannot read it there again.
const dataDirNote = "dataDir"

// manifestDataDir checks the master's existing etcd manifest, before
// anything changes: a manifest that is not a readable Pod with an etcd
// container is refused. It returns the data dir that manifest gives etcd
// (see manifest.DataDirOnHost), or "" when the master has no manifest.
func (jn *joiner) manifestDataDir() (rel, why string, err error) {
	p := jn.abs(jn.prof.Manifest)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	m, err := manifest.Load(p)
	if err != nil {
		return "", "", fmt.Errorf("%w: repair the manifest (or put back the one kept by an earlier run) and re-run", err)
	}
	return m.DataDirOnHost(jn.root, jn.m.Host, jn.prof.DataDir)
}

// chooseDataDir sets the data dir the join keeps aside, creates and names
// in a new manifest: the one this run recorded, else the one the master's
// manifest (fromManifest, "" without one) or the manifest this run kept
// gives etcd, else the profile's default.
func (jn *joiner) chooseDataDir(fromManifest, why string) error {
	if rel := jn.j.Notes[dataDirNote]; rel != "" {
		if err := rootfs.CheckPath(rel); err != nil {
			return fmt.Errorf("journal %s: data dir: %w: move that file aside to start over", jn.j.File(), err)
		}
		fromManifest, why = rel, "recorded by this run in "+jn.j.File()
	} else if fromManifest == "" {
		if k := jn.kept(jn.prof.Manifest); k != "" {
			m, err := manifest.Load(k)
			if err != nil {
				return fmt.Errorf("kept manifest: %w", err)
			}
			if fromManifest, why, err = m.DataDirOnHost(jn.root, jn.m.Host, jn.prof.DataDir); err != nil {
				return err
			}
			why = "kept manifest: " + why
		}
	}
	if fromManifest == "" {
		fromManifest, why = jn.prof.DataDir, "the profile's; the master has no etcd manifest"
	}
	fmt.Fprintf(jn.out, "    data dir: /%s (%s)\n", fromManifest, why)
	jn.prof.DataDir = fromManifest
	if jn.j.Notes["dir:"+fromManifest] != "" {
		return nil // this run kept the old contents: what runs there is the member it started
	}
	return jn.checkNotRunning(fromManifest)
}

// checkNotRunning refuses a data dir an etcd still runs on (an old member
// the kubelet restarted): its contents would be moved from under it.
func (jn *joiner) checkNotRunning(rel string) error {
	return etcddata.CheckNotRunning(jn.abs(rel), "stop it first (move its static pod manifest out of the kubelet's manifests folder, or stop the kubelet), then join")
}

// recordDataDir notes the chosen data dir before a step changes the root.
func (jn *joiner) recordDataDir() error {
	if jn.j.Notes[dataDirNote] == jn.prof.DataDir {
		return nil
	}
	return jn.j.Note(dataDirNote, jn.prof.DataDir)
}

package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// SaveOptions says what to back up and where.
type SaveOptions struct {
	// Client is the etcd client configuration; snapshots are requested from
	// its endpoints one at a time until one answers.
	Client clientv3.Config
	// Root is the master's root, where the static pod resources are read.
	Root string
	// Profile is the master layout; it says which resources to archive.
	Profile *profile.Profile
	// OutDir receives the two files.
	OutDir string
	// Now is the clock (the timestamp in the names); nil means time.Now.
	Now func() time.Time
	// Log receives what Save is about to do; nil discards it.
	Log io.Writer
	// Progress, if set, follows the snapshot's download: bytes received of
	// the member's backend size.
	Progress Progress
}

// Save writes snapshot_<ts>.db and static_kuberesources_<ts>.tar.gz into
// OutDir. Each file is written under a temporary name, fsynced and renamed,
// so a crash leaves either a whole file or none.
func Save(ctx context.Context, o SaveOptions) (*Set, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	ts := now().UTC().Format(TimestampLayout)
	if err := os.MkdirAll(o.OutDir, 0o700); err != nil {
		return nil, err
	}
	set := &Set{Dir: o.OutDir, Timestamp: ts, Form: Pair,
		Snapshot:  filepath.Join(o.OutDir, "snapshot_"+ts+".db"),
		Resources: filepath.Join(o.OutDir, "static_kuberesources_"+ts+".tar.gz")}

	dirs, err := latestResourceDirs(o.Root, o.Profile)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logw, "archiving static pod resources %v into %s\n", dirs, set.Resources)
	if err := writeTarball(set.Resources, filepath.Join(o.Root, o.Profile.ResourcesBase), dirs); err != nil {
		return nil, fmt.Errorf("archive static resources: %w", err)
	}

	var errs []error
	for _, ep := range o.Client.Endpoints {
		cfg := o.Client
		cfg.Endpoints = []string{ep}
		fmt.Fprintf(logw, "saving snapshot from %s into %s\n", ep, set.Snapshot)
		if err := downloadSnapshot(ctx, cfg, set.Snapshot, o.Progress); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		if err := atomicfile.SyncDir(o.OutDir); err != nil {
			return nil, err
		}
		return set, nil
	}
	os.Remove(set.Resources) // a lone tarball would only be reported as incomplete
	return nil, fmt.Errorf("no endpoint gave a snapshot: %w", errors.Join(errs...))
}

var revisionDir = regexp.MustCompile(`^(.*)-(\d+)$`)

// latestResourceDirs returns, relative to the profile's ResourcesBase, the
// static pod resource folders a restore needs: for OpenShift the newest
// revision of each kube control plane pod (kube-apiserver-pod-N …), as the
// 4.3 backup script picks them; for kubeadm the pki folder.
func latestResourceDirs(root string, p *profile.Profile) ([]string, error) {
	base := filepath.Join(root, p.ResourcesBase)
	res := filepath.Join(root, p.StaticPodResources)
	rel, err := filepath.Rel(base, res)
	if err != nil {
		return nil, err
	}
	if p.Name != profile.OpenShift43 {
		if _, err := os.Stat(res); err != nil {
			return nil, fmt.Errorf("static resources %s: %w", res, err)
		}
		return []string{rel}, nil
	}
	entries, err := os.ReadDir(res)
	if err != nil {
		return nil, fmt.Errorf("read static pod resources: %w", err)
	}
	newest := map[string]int{}
	for _, e := range entries {
		m := revisionDir.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil {
			continue
		}
		switch m[1] {
		case "kube-apiserver-pod", "kube-controller-manager-pod", "kube-scheduler-pod":
			n, _ := strconv.Atoi(m[2])
			if n >= newest[m[1]] {
				newest[m[1]] = n
			}
		}
	}
	if len(newest) == 0 {
		return nil, fmt.Errorf("no kube-apiserver-pod-N, kube-controller-manager-pod-N or kube-scheduler-pod-N under %s", res)
	}
	var dirs []string
	for prefix, n := range newest {
		dirs = append(dirs, filepath.Join(rel, fmt.Sprintf("%s-%d", prefix, n)))
	}
	sort.Strings(dirs)
	return dirs, nil
}

func writeTarball(out, base string, dirs []string) error {
	f, err := atomicfile.Create(out, 0o600)
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(base, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			link := ""
			if info.Mode()&fs.ModeSymlink != 0 {
				if link, err = os.Readlink(p); err != nil {
					return err
				}
			}
			h, err := tar.FileInfoHeader(info, link)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(base, p)
			h.Name = filepath.ToSlash(rel)
			if e.IsDir() {
				h.Name += "/"
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				return nil
			}
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		})
		if err != nil {
			f.Abort()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Abort()
		return err
	}
	if err := gz.Close(); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

package restore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

func (r *restore) restoreResourcesStep() steps.Step {
	base := func() string { return r.abs(r.prof.ResourcesBase) }
	return steps.Step{
		Name: "restore-static-resources",
		Describe: func() string {
			return fmt.Sprintf("extract the static pod resources %s %v into %s (files it replaces are moved to %s)",
				r.set.Resources, r.report.Resources.TopDirs, base(), r.j.BackupDir(r.o.Root))
		},
		Check: func(context.Context) (steps.State, error) {
			if r.set.Resources == "" {
				return steps.NotNeeded, nil
			}
			diff, err := r.resourceDiff(base())
			if err != nil {
				return steps.ToDo, err
			}
			if len(diff) == 0 {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error { return r.extractResources(base()) },
	}
}

// tarFiles calls fn for each regular file and symlink of the resources
// tarball, skipping a single-file backup's snapshot. The entries the
// verify-backup step's one pass over a single-file backup kept in memory
// are used when there are some: reading the tarball again would inflate
// the whole snapshot again to reach them.
func (r *restore) tarFiles(fn func(h *tar.Header, name string, body io.Reader) error) error {
	if r.report.Resources != nil && r.report.Resources.Files != nil {
		for _, f := range r.report.Resources.Files {
			if err := fn(f.Header, backup.EntryName(f.Header.Name), bytes.NewReader(f.Body)); err != nil {
				return err
			}
		}
		return nil
	}
	f, err := os.Open(r.set.Resources)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := backup.EntryName(h.Name)
		if r.set.Form == backup.SingleFile && name == r.report.Resources.Snapshot {
			continue
		}
		if err := fn(h, name, tr); err != nil {
			return err
		}
	}
}

// resourceDiff lists the tarball's files that are missing or different on disk.
func (r *restore) resourceDiff(base string) ([]string, error) {
	var diff []string
	err := r.tarFiles(func(h *tar.Header, name string, body io.Reader) error {
		// A regular file is read where the master would read it (a symlink
		// followed in the root); a symlink entry is compared as a link.
		resolve := r.root.Resolve
		if h.Typeflag == tar.TypeSymlink {
			resolve = r.root.ResolveParent
		}
		p, err := resolve(filepath.Join(r.prof.ResourcesBase, name))
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeReg:
			same, err := sameContent(p, body)
			if err != nil {
				return err
			}
			if !same {
				diff = append(diff, name)
			}
		case tar.TypeSymlink:
			if l, err := os.Readlink(p); err != nil || l != h.Linkname {
				diff = append(diff, name)
			}
		}
		return nil
	})
	return diff, err
}

func sameContent(p string, body io.Reader) (bool, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	h1, h2 := sha256.New(), sha256.New()
	if _, err := io.Copy(h1, f); err != nil {
		return false, err
	}
	if _, err := io.Copy(h2, body); err != nil {
		return false, err
	}
	return bytes.Equal(h1.Sum(nil), h2.Sum(nil)), nil
}

// extractResources writes the tarball's entries under base (the host path
// of the profile's ResourcesBase) through the master's root: every path is
// resolved inside the root, so a certificate folder that is a symlink on
// the master (absolute ones included) receives the files at its target,
// and nothing is written outside the root. The backup check refused entries
// that leave base. A file it would replace with other content is moved to
// the run's backup folder first.
func (r *restore) extractResources(base string) error {
	if _, err := r.root.MkdirAll(r.prof.ResourcesBase, 0o755); err != nil {
		return err
	}
	keepBase := filepath.Join(r.j.BackupDir(r.o.Root), r.prof.ResourcesBase)
	rel := func(name string) string { return filepath.Join(r.prof.ResourcesBase, name) }
	var links []*tar.Header
	written := 0
	err := r.tarFiles(func(h *tar.Header, name string, body io.Reader) error {
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			_, err := r.root.MkdirAll(rel(name), mode|0o700)
			return err
		case tar.TypeReg:
			if _, err := r.root.MkdirAll(rel(path.Dir(name)), 0o755); err != nil {
				return err
			}
			data, err := io.ReadAll(body)
			if err != nil {
				return err
			}
			if old, err := r.root.ReadFile(rel(name), 0); err == nil {
				if bytes.Equal(old, data) {
					return nil
				}
				if err := r.keepResource(rel(name), keepBase, name); err != nil {
					return err
				}
			} else if err := r.recordCreated(rel(name)); err != nil {
				return err
			}
			if err := r.root.WriteFile(rel(name), data, mode); err != nil {
				return fmt.Errorf("write %s: %w", filepath.Join(base, name), err)
			}
			written++
		case tar.TypeSymlink, tar.TypeLink:
			links = append(links, h) // after the files they point to
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, h := range links {
		name := backup.EntryName(h.Name)
		p, err := r.root.ResolveParent(rel(name))
		if err != nil {
			return err
		}
		if l, err := os.Readlink(p); err == nil && l == h.Linkname {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			if err := r.keepResource(rel(name), keepBase, name); err != nil {
				return err
			}
		} else if err := r.keeper().BeforeWrite(p); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeSymlink {
			err = os.Symlink(h.Linkname, p)
		} else {
			var old string
			if old, err = r.root.ResolveParent(rel(backup.EntryName(h.Linkname))); err == nil {
				err = os.Link(old, p)
			}
		}
		if err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
		written++
	}
	fmt.Fprintf(r.out, "    wrote %d files under %s\n", written, base)
	return atomicfile.SyncDir(base)
}

// recordCreated journals that the run writes the resource file rel where
// there is none (keep.Keeper.BeforeWrite), so an undo moves it aside.
func (r *restore) recordCreated(rel string) error {
	p, err := r.root.ResolveParent(rel)
	if err != nil {
		return err
	}
	return r.keeper().BeforeWrite(p)
}

// keepResource moves a file about to be replaced into the backup folder.
func (r *restore) keepResource(rel, keepBase, name string) error {
	p, err := r.root.ResolveParent(rel)
	if err != nil {
		return err
	}
	return r.keeper().Move(p, filepath.Join(keepBase, name))
}

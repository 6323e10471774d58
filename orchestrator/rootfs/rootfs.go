// Package rootfs resolves paths on a master's root filesystem as the master
// itself would: symlinks, absolute ones included, are interpreted relative to
// the root, and ".." never leads out of it. It is the one place that joins a
// path onto --root; everything else asks a Root.
//
// Resolution is github.com/cyphar/filepath-securejoin (SecureJoin, and its
// pathrs-lite OpenInRoot/MkdirAll for the file operations, which use
// openat2(RESOLVE_IN_ROOT) where the kernel has it). Go's os.Root does not
// fit: it refuses absolute symlinks instead of resolving them inside the root,
// and a master whose /var/lib/etcd links to /data/etcd is a normal layout.
//
// A path "as the master sees it" may be written with or without the leading
// slash: "/var/lib/etcd" and "var/lib/etcd" name the same place.
package rootfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
)

// Root is a master's root filesystem mounted (or unpacked) on this host.
type Root struct {
	// Path is the root's host path: absolute, clean and free of symlinks.
	Path string
}

// Open returns the root at path, which must be an existing folder. The
// host's own symlinks on the way to it are resolved once, here.
func Open(path string) (*Root, error) {
	if path == "" {
		return nil, errors.New("root is empty: give the master's root folder (--root)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", path, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w (give the folder the master's root is mounted on)", path, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("root %s is not a folder (give the folder the master's root is mounted on)", path)
	}
	return &Root{Path: real}, nil
}

// Resolve returns the host path of rel as the master sees it, every symlink
// followed inside the root, the last one included. Missing components are
// kept as written, so a path that does not exist yet resolves to where it
// would be created. The result is always Path or below it.
func (r *Root) Resolve(rel string) (string, error) {
	if strings.IndexByte(rel, 0) >= 0 {
		return "", fmt.Errorf("path %q contains a NUL byte", rel)
	}
	p, err := securejoin.SecureJoin(r.Path, rel)
	if err != nil {
		return "", fmt.Errorf("resolve %s in root %s: %w", rel, r.Path, err)
	}
	if !r.contains(p) {
		// SecureJoin never does this; the check keeps the promise visible.
		return "", fmt.Errorf("resolve %s in root %s: %s is outside the root", rel, r.Path, p)
	}
	return p, nil
}

// ResolveParent is Resolve for every component but the last, which is kept
// as it is: the host path of the entry itself, not of what it links to (the
// lstat view). A rel whose last component is "", "." or "..", or that ends
// in "/" (which follows a link, as on POSIX), is resolved fully.
func (r *Root) ResolveParent(rel string) (string, error) {
	dir, base := filepath.Split(rel)
	if base == "" || base == "." || base == ".." {
		return r.Resolve(rel)
	}
	d, err := r.Resolve(dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, base), nil
}

// Rel returns hostPath as the master sees it ("/var/lib/etcd"), or an error
// when hostPath is not inside the root.
func (r *Root) Rel(hostPath string) (string, error) {
	abs, err := filepath.Abs(hostPath)
	if err != nil {
		return "", err
	}
	if !r.contains(abs) {
		return "", fmt.Errorf("%s is not inside the root %s", hostPath, r.Path)
	}
	rel, err := filepath.Rel(r.Path, abs)
	if err != nil {
		return "", err
	}
	if rel == "." {
		return "/", nil
	}
	return "/" + rel, nil
}

func (r *Root) contains(p string) bool {
	p = filepath.Clean(p)
	return p == r.Path || r.Path == "/" || strings.HasPrefix(p, r.Path+string(filepath.Separator))
}

// Lstat describes the entry rel names, without following it if it is a
// symlink (its parents are followed inside the root).
func (r *Root) Lstat(rel string) (fs.FileInfo, error) {
	p, err := r.ResolveParent(rel)
	if err != nil {
		return nil, err
	}
	return os.Lstat(p)
}

// Stat describes what rel names, symlinks followed inside the root.
func (r *Root) Stat(rel string) (fs.FileInfo, error) {
	p, err := r.Resolve(rel)
	if err != nil {
		return nil, err
	}
	return os.Stat(p)
}

// Open opens rel for reading. The file is opened through the root with
// openat2(RESOLVE_IN_ROOT) where available, so a symlink swapped in after a
// Resolve cannot lead it outside.
func (r *Root) Open(rel string) (*os.File, error) {
	h, err := pathrs.OpenInRoot(r.Path, rel)
	if err != nil {
		return nil, fmt.Errorf("open %s in root %s: %w", rel, r.Path, err)
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open %s in root %s: %w", rel, r.Path, err)
	}
	return f, nil
}

// ReadFile reads rel, refusing more than limit bytes (limit <= 0: no limit).
func (r *Root) ReadFile(rel string, limit int64) ([]byte, error) {
	f, err := r.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s in root %s is a folder, not a file", rel, r.Path)
	}
	var rd io.Reader = f
	if limit > 0 {
		rd = io.LimitReader(f, limit+1)
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read %s in root %s: %w", rel, r.Path, err)
	}
	if limit > 0 && int64(len(b)) > limit {
		return nil, fmt.Errorf("%s in root %s is larger than %d bytes", rel, r.Path, limit)
	}
	return b, nil
}

// MkdirAll creates rel and its missing parents inside the root, following
// existing symlinks inside the root, and returns its host path.
func (r *Root) MkdirAll(rel string, mode fs.FileMode) (string, error) {
	if err := pathrs.MkdirAll(r.Path, rel, mode); err != nil {
		return "", fmt.Errorf("create %s in root %s: %w", rel, r.Path, err)
	}
	return r.Resolve(rel)
}

// WriteFile replaces rel atomically (a temporary file renamed over it, both
// synced) with data. A symlink at rel is followed inside the root: the master
// would write its target. Missing parent folders are created (0755).
func (r *Root) WriteFile(rel string, data []byte, mode fs.FileMode) error {
	p, err := r.Resolve(rel)
	if err != nil {
		return err
	}
	dirRel, err := r.Rel(filepath.Dir(p))
	if err != nil {
		return err
	}
	if _, err := r.MkdirAll(dirRel, 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p, data, mode); err != nil {
		return fmt.Errorf("write %s in root %s: %w", rel, r.Path, err)
	}
	return nil
}

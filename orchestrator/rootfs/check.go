package rootfs

import (
	"fmt"
	"path/filepath"
	"strings"
)

// CheckPath validates a path read back from a file the tool wrote itself (a
// journal): a path on the master as "/var/lib/etcd" or "var/lib/etcd", clean,
// without ".." and without NUL. A path that fails was not written by this
// tool, and using it could move data outside the root, or the root itself.
func CheckPath(p string) error {
	switch {
	case p == "" || p == "/" || p == ".":
		return fmt.Errorf("path %q names the whole root, not an entry in it", p)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q contains a NUL byte", p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("path %q is not clean (it would be %q)", p, filepath.Clean(p))
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("path %q contains \"..\"", p)
		}
	}
	return nil
}

// CheckName validates a single path element read back from a file the tool
// wrote itself (a run ID that names a folder): not empty, not "." or "..",
// no "/" and no NUL.
func CheckName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("name is empty")
	case s == "." || s == "..":
		return fmt.Errorf("name %q is not a folder name", s)
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("name %q contains \"/\" or NUL", s)
	}
	return nil
}

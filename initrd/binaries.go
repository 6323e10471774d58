package initrd

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/mkuimage/cpio"
)

// Tools are the build host's (Debian's) programs the image carries to
// activate the volumes a master's root may sit on: md RAID (mdadm), LVM2
// (lvm), LUKS (cryptsetup) and device-mapper (dmsetup). They are copied with
// their shared libraries and the dynamic loader, as dracut and booster do.
var Tools = []string{"/usr/sbin/mdadm", "/usr/sbin/lvm", "/usr/sbin/cryptsetup", "/usr/sbin/dmsetup"}

// libraryDirs are where the loader of a Debian amd64 system looks for a
// library that its DT_RUNPATH does not place.
var libraryDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// ToolFiles returns every file the programs need to run, by the path they
// are found at: each program, the libraries its DT_NEEDED entries name
// (transitively, resolved on this host), and its ELF interpreter. A
// program or library that is missing is an error naming it.
func ToolFiles(programs []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var walk func(p, neededBy string) error
	walk = func(p, neededBy string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		f, err := elf.Open(p)
		if err != nil {
			if neededBy != "" {
				return fmt.Errorf("%s (needed by %s): %w", p, neededBy, err)
			}
			return err
		}
		defer f.Close()
		out = append(out, p)
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return fmt.Errorf("%s: interpreter: %w", p, err)
			}
			if err := walk(strings.TrimRight(string(b), "\x00"), p); err != nil {
				return err
			}
		}
		needed, err := f.DynString(elf.DT_NEEDED)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		runpath, _ := f.DynString(elf.DT_RUNPATH)
		for _, lib := range needed {
			found, err := findLibrary(lib, runpath, filepath.Dir(p))
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := walk(found, p); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range programs {
		if err := walk(p, ""); err != nil {
			return nil, fmt.Errorf("initrd: %w (install mdadm, lvm2, cryptsetup-bin and dmsetup: make deps)", err)
		}
	}
	return out, nil
}

// findLibrary finds a DT_NEEDED library as the loader would: in the
// DT_RUNPATH folders ($ORIGIN is the object's folder), then the system's.
func findLibrary(lib string, runpath []string, origin string) (string, error) {
	var dirs []string
	for _, rp := range runpath {
		for _, d := range strings.Split(rp, ":") {
			dirs = append(dirs, strings.ReplaceAll(d, "$ORIGIN", origin))
		}
	}
	for _, d := range append(dirs, libraryDirs...) {
		p := filepath.Join(d, lib)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("library %s not found in %s", lib, strings.Join(append(dirs, libraryDirs...), ", "))
}

// ToolRecords returns the cpio records of the programs and their library
// closure (see ToolFiles), each at the path it is found at, with the
// folders above them. A library reached through a symbolic link (a soname)
// is stored as a regular file under that name.
func ToolRecords(programs []string) ([]cpio.Record, error) {
	files, err := ToolFiles(programs)
	if err != nil {
		return nil, err
	}
	dirs := map[string]bool{}
	var recs []cpio.Record
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
		name := strings.TrimPrefix(path.Clean(p), "/")
		if name == "" {
			return nil, errors.New("initrd: empty tool path")
		}
		for d := path.Dir(name); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
		recs = append(recs, cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | 0o755}))
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		recs = append(recs, cpio.Directory(d, 0o755))
	}
	return recs, nil
}

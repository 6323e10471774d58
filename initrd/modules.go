package initrd

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultModules are the drivers and filesystems a rescue boot needs on the
// machines we know: virtio (QEMU/KVM, most clouds), NVMe and AHCI disks, SCSI
// disks and CD-ROMs, the filesystems a master root or a backup volume may
// use, and QEMU's fw_cfg (the Ignition config in a VM). A module the kernel
// has built in is skipped; one it lacks entirely is reported, not fatal.
var DefaultModules = []string{
	"virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "virtio_console",
	"nvme", "ahci", "sd_mod", "sr_mod",
	"xfs", "ext4", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "isofs",
	"qemu_fw_cfg",
}

// Kmods is the kernel's module index read from a /lib/modules/<version>
// directory: modules.dep (every loadable module and its dependencies) and
// modules.builtin (what needs no loading).
type Kmods struct {
	// Dir is the /lib/modules/<version> directory.
	Dir string
	// deps maps a module name (underscores) to its path (relative to Dir)
	// and its dependencies' paths, as modules.dep lists them.
	paths   map[string]string
	deps    map[string][]string
	builtin map[string]bool
}

// ModName turns a module path or name ("kernel/fs/fat/vfat.ko", "virtio-pci")
// into its canonical name ("vfat", "virtio_pci").
func ModName(s string) string {
	base := filepath.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// ReadKmods reads modules.dep and modules.builtin from dir. A kernel package
// that ships no modules.dep must be indexed with depmod first.
func ReadKmods(dir string) (*Kmods, error) {
	k := &Kmods{Dir: dir, paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w (run `depmod -b ROOT VERSION` or scripts/fetch-kernel.sh)", err)
	}
	defer f.Close()
	if err := k.parseDep(f); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if b, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		defer b.Close()
		s := bufio.NewScanner(b)
		for s.Scan() {
			if line := strings.TrimSpace(s.Text()); line != "" {
				k.builtin[ModName(line)] = true
			}
		}
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	return k, nil
}

func (k *Kmods) parseDep(r io.Reader) error {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("line %d: %q is not `module: deps`", n, line)
		}
		name := ModName(mod)
		k.paths[name] = mod
		k.deps[name] = strings.Fields(deps)
	}
	return s.Err()
}

// Resolution is the result of resolving wanted modules against the index.
type Resolution struct {
	// Load lists module paths (relative to Kmods.Dir) in load order:
	// every module comes after all of its dependencies.
	Load []string
	// Builtin lists wanted modules the kernel has built in.
	Builtin []string
	// Missing lists wanted modules this kernel does not have.
	Missing []string
}

// Resolve returns the wanted modules and everything they depend on, in an
// order that loads dependencies first. The order is deterministic.
func (k *Kmods) Resolve(wanted []string) Resolution {
	var r Resolution
	seen := map[string]bool{}
	var visit func(path string)
	visit = func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		// modules.dep lists a module's dependencies, transitively, with
		// the ones loaded last first; visiting each keeps us correct even
		// for an index that lists only direct dependencies.
		for _, d := range k.deps[ModName(path)] {
			visit(d)
		}
		r.Load = append(r.Load, path)
	}
	for _, w := range wanted {
		name := ModName(w)
		if p, ok := k.paths[name]; ok {
			visit(p)
		} else if k.builtin[name] {
			r.Builtin = append(r.Builtin, name)
		} else {
			r.Missing = append(r.Missing, name)
		}
	}
	sort.Strings(r.Builtin)
	sort.Strings(r.Missing)
	return r
}

// DepFile renders a modules.dep that lists only the given modules (the ones
// the image carries), so modprobe in the rescue shell resolves them too.
func (k *Kmods) DepFile(load []string) string {
	var b strings.Builder
	sorted := append([]string(nil), load...)
	sort.Strings(sorted)
	for _, p := range sorted {
		b.WriteString(p + ":")
		for _, d := range k.deps[ModName(p)] {
			b.WriteString(" " + d)
		}
		b.WriteString("\n")
	}
	return b.String()
}

package initrd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Kmods is the kernel's module index read from a /lib/modules/<version>
// directory: modules.dep (every loadable module and its dependencies),
// modules.builtin (what needs no loading), modules.alias (which module
// drives which device, by modalias pattern) and modules.softdep (modules a
// module needs without linking to them, such as ext4's crc32c).
type Kmods struct {
	// Dir is the /lib/modules/<version> directory.
	Dir string
	// deps maps a module name (underscores) to its path (relative to Dir)
	// and its dependencies' paths, as modules.dep lists them.
	paths   map[string]string
	deps    map[string][]string
	builtin map[string]bool
	// aliases are modules.alias's lines in file order; byBus indexes them
	// by the pattern's text before its first ':' ("pci", "usb", ...).
	aliases []Alias
	byBus   map[string][]int
	// softdeps maps a module name to its modules.softdep line's lists.
	softdeps map[string]softdep
}

// Alias is one line of modules.alias: devices whose modalias matches
// Pattern (a shell glob) are driven by Module.
type Alias struct {
	Pattern, Module string
}

type softdep struct {
	pre, post []string
	line      string
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
	if err := k.readAliases(filepath.Join(dir, "modules.alias")); err != nil {
		return nil, err
	}
	if err := k.readSoftdeps(filepath.Join(dir, "modules.softdep")); err != nil {
		return nil, err
	}
	return k, nil
}

// readAliases reads modules.alias; a missing file is an empty index.
func (k *Kmods) readAliases(p string) error {
	k.byBus = map[string][]int{}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; s.Scan(); n++ {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) != 3 || fields[0] != "alias" {
			return fmt.Errorf("%s: line %d: %q is not `alias PATTERN MODULE`", p, n, s.Text())
		}
		// fnmatch's negated class [!...] is [^...] for path.Match.
		a := Alias{Pattern: strings.ReplaceAll(fields[1], "[!", "[^"), Module: ModName(fields[2])}
		k.byBus[aliasBus(a.Pattern)] = append(k.byBus[aliasBus(a.Pattern)], len(k.aliases))
		k.aliases = append(k.aliases, a)
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// aliasBus is the text of a modalias or pattern before its first ':', or
// "" when that text holds a wildcard (such a pattern is tried on every
// device).
func aliasBus(s string) string {
	bus, _, ok := strings.Cut(s, ":")
	if !ok || strings.ContainsAny(bus, "*?[") {
		return ""
	}
	return bus
}

// readSoftdeps reads modules.softdep; a missing file is an empty index.
func (k *Kmods) readSoftdeps(p string) error {
	k.softdeps = map[string]softdep{}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "softdep" {
			continue
		}
		var sd softdep
		sd.line = strings.TrimSpace(line)
		var list *[]string
		for _, f := range fields[2:] {
			switch f {
			case "pre:":
				list = &sd.pre
			case "post:":
				list = &sd.post
			default:
				if list != nil {
					*list = append(*list, f)
				}
			}
		}
		k.softdeps[ModName(fields[1])] = sd
	}
	return nil
}

// Match returns the modules whose modules.alias patterns match modalias,
// sorted and without duplicates, as modprobe would load them for it.
func (k *Kmods) Match(modalias string) []string {
	seen := map[string]bool{}
	var out []string
	for _, bucket := range [][]int{k.byBus[aliasBus(modalias)], k.byBus[""]} {
		for _, i := range bucket {
			a := k.aliases[i]
			if seen[a.Module] {
				continue
			}
			if ok, err := path.Match(a.Pattern, modalias); err == nil && ok {
				seen[a.Module] = true
				out = append(out, a.Module)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Has reports whether the kernel has the module, loadable or built in.
func (k *Kmods) Has(name string) bool {
	name = ModName(name)
	_, ok := k.paths[name]
	return ok || k.builtin[name]
}

// Builtin reports whether the kernel has the module built in.
func (k *Kmods) Builtin(name string) bool { return k.builtin[ModName(name)] }

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
// order that loads dependencies first: modules.dep's, and modules.softdep's
// pre (before) and post (after) modules, named directly or by an alias
// (ext4's "crypto-crc32c"); a soft dependency the kernel lacks is skipped,
// as modprobe does. The order is deterministic.
func (k *Kmods) Resolve(wanted []string) Resolution {
	var r Resolution
	seen := map[string]bool{}
	var visit func(path string)
	soft := func(names []string) {
		for _, n := range names {
			for _, m := range k.softTargets(n) {
				visit(k.paths[m])
			}
		}
	}
	visit = func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		name := ModName(path)
		soft(k.softdeps[name].pre)
		// modules.dep lists a module's dependencies, transitively, with
		// the ones loaded last first; visiting each keeps us correct even
		// for an index that lists only direct dependencies.
		for _, d := range k.deps[name] {
			visit(d)
		}
		r.Load = append(r.Load, path)
		soft(k.softdeps[name].post)
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

// softTargets are the loadable modules a soft dependency names: the module
// itself, else every module with that alias.
func (k *Kmods) softTargets(name string) []string {
	if _, ok := k.paths[ModName(name)]; ok {
		return []string{ModName(name)}
	}
	var out []string
	for _, m := range k.Match(name) {
		if _, ok := k.paths[m]; ok {
			out = append(out, m)
		}
	}
	return out
}

// AliasFile renders a modules.alias that lists only the given modules'
// aliases (the modules the image carries), in modules.alias's order.
func (k *Kmods) AliasFile(load []string) string {
	carried := carriedNames(load)
	var b strings.Builder
	for _, a := range k.aliases {
		if carried[a.Module] {
			fmt.Fprintf(&b, "alias %s %s\n", strings.ReplaceAll(a.Pattern, "[^", "[!"), a.Module)
		}
	}
	return b.String()
}

// SoftdepFile renders a modules.softdep that lists only the given modules'
// soft dependencies.
func (k *Kmods) SoftdepFile(load []string) string {
	var names []string
	for n := range carriedNames(load) {
		if _, ok := k.softdeps[n]; ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(k.softdeps[n].line + "\n")
	}
	return b.String()
}

// BuiltinFile renders modules.builtin (module paths of the built-in ones).
func (k *Kmods) BuiltinFile() string {
	var names []string
	for n := range k.builtin {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "\n") + "\n"
}

func carriedNames(load []string) map[string]bool {
	m := map[string]bool{}
	for _, p := range load {
		m[ModName(p)] = true
	}
	return m
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

// Command bench measures etcd-rescue against what a user would otherwise
// run, in the same run: the offline restore against a plain
// `etcdutl snapshot restore` (and a copy of the file with fsync, the
// floor), and verify-backup against `etcdutl snapshot status`, on
// snapshots of realistic shape from 256 MiB to 8 GiB; the rescue image's
// size and boot time; and the phases of `etcd-rescue-lab drill` (quorum lost to
// full membership on QEMU VMs) at 10,000 and 100,000 keys. It prints a
// table and writes bench/RESULTS.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
)

func main() {
	cacheDefault := os.Getenv("ETCD_RESCUE_CACHE")
	if cacheDefault == "" {
		home, _ := os.UserHomeDir()
		cacheDefault = filepath.Join(home, ".cache", "etcd-rescue")
	}
	var (
		sizes   = flag.String("sizes", "256M,1G,4G,8G", "snapshot sizes")
		runs    = flag.Int("runs", 3, "runs of each tool per size, alternating")
		cache   = flag.String("cache", filepath.Join(cacheDefault, "bench"), "where generated snapshots are kept between runs")
		work    = flag.String("work", "", "scratch folder for restores (default: a folder under the cache)")
		rescue  = flag.String("etcd-rescue", "bin/etcd-rescue", "the etcd-rescue binary")
		labBin  = flag.String("lab", "bin/etcd-rescue-lab", "the etcd-rescue-lab binary, which runs the drill")
		etcdutl = flag.String("etcdutl", "", "the etcdutl binary (default: built from go.etcd.io/etcd/etcdutl/v3 at go.mod's version)")
		out     = flag.String("out", "bench/RESULTS.md", "results file")
		img     = flag.Bool("image", true, "measure the rescue image's build, size and boot")
		boots   = flag.Int("boots", 5, "boots to time")
		dkeys   = flag.String("drill-keys", "10000,100000", "key counts to run `etcd-rescue-lab drill` at (as root, under TCG); empty: no drill")
		dtime   = flag.Duration("drill-timeout", 2*time.Hour, "longest one drill may run")
		kernel  = flag.String("kernel", "", "kernel the drill's VMs boot (default: the one `make kernel` cached)")
		modules = flag.String("modules", "", "the kernel's /lib/modules/<version> folder (with -kernel)")
		parts   = flag.String("parts", "restore,verify,image,drill", "what to measure: restore, verify, image, drill. Without restore, only the verification section of -out is replaced (the rest is printed)")
		etcd    = flag.String("etcd", "", "etcd server binary the drill's masters run (default: built from go.etcd.io/etcd/server/v3 at go.mod's version)")
		kernels = flag.String("kernels", "generic=.cache/kernel/generic,cloud=.cache/kernel/cloud", "kernel flavours (flavour=folder, as `make kernel` caches them) whose images' size and boot budgets are compared")
		thSize  = flag.String("throttled-size", "1G", "snapshot size of the restore from a throttled source (with -parts restore); empty: not measured")
		thRate  = flag.Int64("throttled-rate", 50_000_000, "read rate of the throttled source, bytes per second")
		imgOnly = flag.Bool("image-only", false, "measure only the kernel flavours' images (size, first line, disks listed) and rewrite that section of -out")
	)
	flag.Parse()
	ps, err := parseParts(*parts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(config{parts: ps, sizes: *sizes, runs: *runs, cache: *cache, work: *work, rescue: *rescue, lab: *labBin, etcdutl: *etcdutl, out: *out, image: *img, boots: *boots,
		drillKeys: *dkeys, drillTimeout: *dtime, kernel: *kernel, modules: *modules, etcd: *etcd, kernels: *kernels, imageOnly: *imgOnly,
		throttledSize: *thSize, throttledRate: *thRate}); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	sizes, cache, work, rescue, lab, etcdutl, out string
	runs, boots                                   int
	image                                         bool
	drillKeys, kernel, modules, etcd              string
	drillTimeout                                  time.Duration
	kernels                                       string
	imageOnly                                     bool
	parts                                         map[string]bool
	throttledSize                                 string
	throttledRate                                 int64
}

// parseParts reads -parts: a comma-separated subset of the parts.
func parseParts(s string) (map[string]bool, error) {
	ps := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		switch p = strings.TrimSpace(p); p {
		case "restore", "verify", "image", "drill":
			ps[p] = true
		case "":
		default:
			return nil, fmt.Errorf("-parts: %q is not restore, verify, image or drill", p)
		}
	}
	return ps, nil
}

func run(c config) error {
	if c.work == "" {
		c.work = filepath.Join(c.cache, "work")
	}
	if c.imageOnly {
		return runImageOnly(c)
	}
	if c.etcdutl == "" {
		c.etcdutl = filepath.Join(c.cache, "etcdutl")
		if err := buildEtcdutl(c.etcdutl); err != nil {
			return err
		}
	}
	if _, err := os.Stat(c.rescue); err != nil {
		return fmt.Errorf("%s: %w (run make build first)", c.rescue, err)
	}
	keys, err := parseKeys(c.drillKeys)
	if err != nil {
		return err
	}
	if !c.parts["drill"] {
		keys = nil
	}
	var drillIn *drillInputs
	if len(keys) > 0 {
		if drillIn, err = prepareDrill(c, keys); err != nil {
			return err
		}
	}
	rep := &report{machine: machine(c.work), load: loadAverage()}
	if !(c.parts["restore"] && c.parts["verify"] && c.parts["image"] && c.parts["drill"] && c.image) {
		rep.partial = fmt.Sprintf("Measured %s on %s with `-parts %s` at %s, runs alternating, %d each; the sections of the parts not run are from the last full run. Load average (1, 5, 15 min) at the start: %s.",
			time.Now().UTC().Format("2006-01-02 15:04 UTC"), rep.machine, strings.Join(sortedKeys(c.parts), ","), c.sizes, c.runs, rep.load)
	}
	var largest string // the largest snapshot measured: it is profiled
	for _, s := range strings.Split(c.sizes, ",") {
		size, err := parseSize(s)
		if err != nil {
			return err
		}
		// a snapshot, a restored copy per tool, and headroom
		need := uint64(size) * 4
		if free := freeBytes(c.cache); free < need {
			rep.skipped = append(rep.skipped, fmt.Sprintf("%s: needs %d GiB free, %d GiB available", s, need>>30, free>>30))
			continue
		}
		snap, err := snapshotOfSize(c.cache, size)
		if err != nil {
			return fmt.Errorf("generate %s snapshot: %w", s, err)
		}
		res, err := measure(c, snap)
		if err != nil {
			return err
		}
		res.label = s
		rep.rows = append(rep.rows, res)
		fmt.Println(res.line())
		largest = snap
	}
	if c.parts["restore"] && c.throttledSize != "" {
		if rep.throttled, err = throttledRow(c); err != nil {
			return err
		}
		fmt.Print(rep.throttled.markdown())
	}
	if largest != "" && c.parts["restore"] {
		if rep.profile, err = profileRestore(c, largest); err != nil {
			return err
		}
	}
	if c.image && c.parts["image"] {
		ir, err := measureImage(c)
		if err != nil {
			return err
		}
		rep.image = ir
		rep.load = loadAverage()
		if rep.kernels, err = measureKernels(c, c.kernels, c.boots); err != nil {
			return err
		}
	}
	if drillIn != nil {
		rep.drill = measureDrill(c, drillIn)
	}
	if rep.partial != "" {
		rep.partial += " At the end: " + loadAverage() + "."
		measured := len(rep.rows) > 0 && (c.parts["restore"] || c.parts["verify"])
		if !measured && rep.drill == nil {
			return nil
		}
		// Only the measured sections (and the Targets rows about them) are
		// replaced; the rest stays as the last full run wrote it.
		old, err := os.ReadFile(c.out)
		if err != nil {
			return err
		}
		text := string(old)
		if c.parts["restore"] {
			text = spliceSection(text, "## Offline restore", strings.TrimPrefix(rep.restoreMarkdown(), "\n"))
		}
		if c.parts["verify"] {
			text = spliceSection(text, "\n## Backup verification", rep.verifyMarkdown())
		}
		if measured {
			text = spliceSection(text, "\n## Targets", rep.mergeTargets(section(text, "\n## Targets"), c.parts))
		}
		if rep.drill != nil {
			text = spliceDrill(text, rep.drill)
		}
		fmt.Print(text)
		return os.WriteFile(c.out, []byte(text), 0o644)
	}
	text := rep.markdown()
	fmt.Print("\n" + text)
	return os.WriteFile(c.out, []byte(text), 0o644)
}

// throttledRow measures the restore from a throttled source at -throttled-size.
func throttledRow(c config) (*throttled, error) {
	size, err := parseSize(c.throttledSize)
	if err != nil {
		return nil, err
	}
	snap, err := snapshotOfSize(c.cache, size)
	if err != nil {
		return nil, err
	}
	ca, err := pki.NewCA("bench", time.Hour)
	if err != nil {
		return nil, err
	}
	return measureThrottled(c, ca, snap, c.throttledRate)
}

// buildEtcdutl builds etcdutl's command at go.mod's version in a module of
// its own: this module does not require every package the command needs,
// and etcdutl's go.mod has replace directives, which go install refuses.
func buildEtcdutl(out string) error {
	v, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "go.etcd.io/etcd/etcdutl/v3").Output()
	if err != nil {
		return fmt.Errorf("etcdutl's version in go.mod: %w", err)
	}
	dir, err := os.MkdirTemp("", "bench-etcdutl-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out, err = filepath.Abs(out)
	if err != nil {
		return err
	}
	for _, args := range [][]string{
		{"mod", "init", "bench/etcdutl"},
		{"get", "go.etcd.io/etcd/etcdutl/v3@" + strings.TrimSpace(string(v))},
		{"build", "-o", out, "go.etcd.io/etcd/etcdutl/v3"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build etcdutl: go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	return nil
}

// loadAverage is the first three fields of /proc/loadavg: on a shared
// machine, how busy it was while measuring.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "unknown"
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		return 0, fmt.Errorf("size %q: want like 256M or 8G", s)
	}
	return n * mult, nil
}

func freeBytes(dir string) uint64 {
	os.MkdirAll(dir, 0o755)
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

// runImageOnly measures the kernel flavours' images and rewrites only their
// section of the results file: the rest of a full run (hours) stays.
func runImageOnly(c config) error {
	if _, err := os.Stat(c.rescue); err != nil {
		return fmt.Errorf("%s: %w (run make build first)", c.rescue, err)
	}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	load := loadAverage()
	ir, err := measureImage(c)
	if err != nil {
		return err
	}
	kis, err := measureKernels(c, c.kernels, c.boots)
	if err != nil {
		return err
	}
	kernelSection := kernelsMarkdown(kis, load)
	fmt.Print(ir.markdown() + "\n" + kernelSection)
	old, err := os.ReadFile(c.out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	rep := &report{image: ir, kernels: kis}
	text := spliceImage(spliceKernels(string(old), kernelSection), ir.markdown())
	text = spliceSection(text, "\n## Targets", rep.mergeImageTargets(section(text, "\n## Targets")))
	return os.WriteFile(c.out, []byte(text), 0o644)
}

// spliceImage puts the image section (build, sizes) in place of the one
// before the kernel images' section.
func spliceImage(results, image string) string {
	i, j := strings.Index(results, "\n## Rescue image\n"), strings.Index(results, kernelsStart)
	if i < 0 || j < i {
		return results
	}
	return results[:i] + image + "\n" + results[j:]
}

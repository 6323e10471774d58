package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// imageResult is the rescue image's build time and size. Its boot times
// are measured per kernel flavour (kernels.go).
type imageResult struct {
	cold, warm           time.Duration
	compressed, raw, iso int64
	uncompressed         int64
	parts                map[string]int64
}

// measureImage builds the rescue image twice (cold: an empty Go build cache
// for u-root's commands; warm: again) and sizes it.
func measureImage(c config) (*imageResult, error) {
	r := &imageResult{parts: map[string]int64{}}
	var out string
	for i, cold := range []bool{true, false} {
		out = filepath.Join(c.work, fmt.Sprintf("image-%d", i))
		os.RemoveAll(out)
		cmd := exec.Command(c.rescue, "build-image", "--format", "all", "--out", out, "--binary", c.rescue)
		cmd.Env = os.Environ()
		if cold {
			gocache, err := os.MkdirTemp(c.work, "gocache-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(gocache)
			cmd.Env = append(cmd.Env, "GOCACHE="+gocache)
		}
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build-image: %v\n%s", err, b)
		}
		if cold {
			r.cold = time.Since(start)
		} else {
			r.warm = time.Since(start)
		}
	}
	r.compressed = fileSize(filepath.Join(out, "initrd.img"))
	r.raw = fileSize(filepath.Join(out, "etcd-rescue.raw"))
	r.iso = fileSize(filepath.Join(out, "etcd-rescue.iso"))
	if err := r.listInitrd(filepath.Join(out, "initrd.img")); err != nil {
		return nil, err
	}
	return r, nil
}

// listInitrd reads the initramfs's files and sizes them by part.
func (r *imageResult) listInitrd(path string) error {
	sh := fmt.Sprintf("zstd -dc %q | cpio -itv --quiet", path)
	out, err := exec.Command("sh", "-c", sh).Output()
	if err != nil {
		return fmt.Errorf("list initramfs (zstd, cpio): %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || !strings.HasPrefix(f[0], "-") {
			continue
		}
		var size int64
		fmt.Sscanf(f[4], "%d", &size)
		name := f[len(f)-1]
		r.uncompressed += size
		switch {
		case strings.Contains(name, "etcd-rescue"):
			r.parts["etcd-rescue (the orchestrator)"] += size
		case strings.Contains(name, "lib/modules/"):
			r.parts["kernel modules"] += size
		case strings.HasPrefix(name, "bbin/") || strings.HasPrefix(name, "bin/"):
			r.parts["u-root commands (busybox)"] += size
		case strings.HasPrefix(name, "usr/sbin/") || strings.HasPrefix(name, "lib/") || strings.HasPrefix(name, "lib64/"):
			r.parts["volume tools (mdadm, lvm, cryptsetup, dmsetup), their libraries and the loader"] += size
		default:
			r.parts["other files"] += size
		}
	}
	return nil
}

func (r *imageResult) markdown() string {
	var b strings.Builder
	b.WriteString("\n## Rescue image\n\n")
	fmt.Fprintf(&b, "| build cold (empty Go build cache) | build warm | initramfs compressed | uncompressed | raw disk | iso |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |\n\n", d(r.cold), d(r.warm),
		float64(r.compressed)/(1<<20), float64(r.uncompressed)/(1<<20), float64(r.raw)/(1<<20), float64(r.iso)/(1<<20))
	b.WriteString("| part of the initramfs (uncompressed) | size |\n|---|---|\n")
	var names []string
	for n := range r.parts {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return r.parts[names[i]] > r.parts[names[j]] })
	for _, n := range names {
		fmt.Fprintf(&b, "| %s | %.1f MiB |\n", n, float64(r.parts[n])/(1<<20))
	}
	b.WriteString("\nBoot times: see the images by kernel below (the same image, booted per kernel flavour and disk controller).\n")
	return b.String()
}

// Package masteros builds the lab master OS: an uncompressed newc initramfs
// whose /init is etcd-rescue-lab, run by the kernel as `/init lab-kubelet`
// (the lab kubelet, package lab/kubelet), with a real etcd at
// /bin/etcd (the binary the etcd image would carry) and the kernel modules
// a lab master needs, loaded by the kubelet in dependency order. The
// master's state lives on its own virtio disk, not in the initramfs, so one
// image serves every master. It is uncompressed on purpose: decompressing
// ~40 MB under TCG costs more boot time than copying it.
package masteros

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/mkuimage/cpio"

	"github.com/etcd-rescue/etcd-rescue/initrd"
)

// Modules are what a lab master loads: virtio disk and network, ext4, and
// the virtio RNG (so TLS does not wait for entropy under TCG).
var Modules = []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "ext4"}

// InitArgs end the lab master OS's kernel command line: the kernel passes
// what follows "--" to /init.
const InitArgs = "-- lab-kubelet"

// ModulesLoad is where the image lists the modules (the kubelet reads it).
const ModulesLoad = "/etc/lab/modules.load"

// Config says what goes into the image.
type Config struct {
	// Init is the etcd-rescue-lab binary (static), installed as /init;
	// the kernel command line ends with InitArgs to make it the lab
	// kubelet. The master OS needs nothing of etcd-rescue: the recovery
	// service it runs is on the master's disk, installed by the restore.
	Init string
	// Etcd is the etcd server binary (static), installed as /bin/etcd.
	Etcd string
	// ModulesDir is the kernel's /lib/modules/<version>, indexed by depmod.
	ModulesDir string
}

// Result describes a built image.
type Result struct {
	Size    int64
	Modules initrd.Resolution
}

// Build writes the initramfs to out.
func Build(cfg Config, out string) (*Result, error) {
	k, err := initrd.ReadKmods(cfg.ModulesDir)
	if err != nil {
		return nil, err
	}
	res := &Result{Modules: k.Resolve(Modules)}
	version := filepath.Base(filepath.Clean(cfg.ModulesDir))
	recs := append(initrd.Skeleton(), cpio.Directory("bin", 0o755), cpio.Directory("etc/lab", 0o755))
	for _, f := range []struct{ src, dst string }{{cfg.Init, "init"}, {cfg.Etcd, "bin/etcd"}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("lab master OS: %w", err)
		}
		recs = append(recs, cpio.StaticRecord(b, cpio.Info{Name: f.dst, Mode: cpio.S_IFREG | 0o755}))
	}
	mods, list, err := k.Records(version, res.Modules.Load)
	if err != nil {
		return nil, fmt.Errorf("lab master OS: %w", err)
	}
	recs = append(recs, mods...)
	recs = append(recs, cpio.StaticFile(strings.TrimPrefix(ModulesLoad, "/"), list, 0o644))
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })

	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	w := cpio.Newc.Writer(f)
	for i := range recs {
		recs[i] = cpio.MakeReproducible(recs[i])
	}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab master OS: write %s: %w", out, err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	st, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	res.Size = st.Size()
	return res, nil
}

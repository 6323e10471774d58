package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/etcd-rescue/etcd-rescue/initrd"
)

// KernelCache is where scripts/fetch-kernel.sh unpacks the Debian kernels,
// relative to the source tree: KernelCache/current (the one images are
// built from, the generic kernel unless KERNEL_FLAVOUR=cloud), and
// KernelCache/generic and KernelCache/cloud, link to version directories
// holding boot/vmlinuz-<version> and lib/modules/<version>.
const KernelCache = ".cache/kernel"

// CachedKernel returns the kernel and modules directory scripts/fetch-kernel.sh
// unpacked under root (the source tree) as the current one.
func CachedKernel(root string) (kernel, modules string, err error) {
	return CachedKernelFlavour(root, "current")
}

// CachedKernelFlavour is CachedKernel for a flavour: generic or cloud (the
// cloud kernel boots VMs faster under emulation: lz4, not xz), or current.
func CachedKernelFlavour(root, flavour string) (kernel, modules string, err error) {
	cur := filepath.Join(root, KernelCache, flavour)
	vs, err := filepath.Glob(filepath.Join(cur, "boot", "vmlinuz-*"))
	if err != nil || len(vs) != 1 {
		return "", "", fmt.Errorf("no kernel in %s: run `make kernel` (scripts/fetch-kernel.sh), or pass --kernel and --modules", cur)
	}
	version := strings.TrimPrefix(filepath.Base(vs[0]), "vmlinuz-")
	modules = filepath.Join(cur, "lib", "modules", version)
	if _, err := os.Stat(filepath.Join(modules, "modules.dep")); err != nil {
		return "", "", fmt.Errorf("kernel %s has no modules.dep in %s: run `make kernel` again", version, modules)
	}
	return vs[0], modules, nil
}

// Rescue says how to build the whole rescue image.
type Rescue struct {
	// Initrd configures the initramfs (binary, kernel modules, commands).
	Initrd initrd.Config
	// Kernel is the kernel image.
	Kernel string
	// Cmdline, Stub and Version are as in Inputs.
	Cmdline, Stub, Version string
	// Format is pxe, raw, iso or all.
	Format string
	// Out is the output directory; the initramfs is written there as
	// initrd.img whatever the format.
	Out string
}

// Report is what BuildRescue wrote.
type Report struct {
	Initrd  *initrd.Result
	Outputs []Output
}

// BuildRescue builds the initramfs and then the requested formats.
func BuildRescue(ctx context.Context, r Rescue) (*Report, error) {
	if err := os.MkdirAll(r.Out, 0o755); err != nil {
		return nil, err
	}
	initrdPath := filepath.Join(r.Out, "initrd.img")
	res, err := initrd.Build(ctx, r.Initrd, initrdPath)
	if err != nil {
		return nil, err
	}
	outs, err := Build(Inputs{Kernel: r.Kernel, Initrd: initrdPath, Cmdline: r.Cmdline, Stub: r.Stub, Version: r.Version}, r.Format, r.Out)
	if err != nil {
		return nil, err
	}
	return &Report{Initrd: res, Outputs: outs}, nil
}

// Print writes the sizes.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "initramfs\t%s uncompressed, %s zstd\tkernel %s, %d modules\n",
		initrd.MiB(r.Initrd.Size), initrd.MiB(r.Initrd.Compressed), r.Initrd.KernelVersion, len(r.Initrd.Modules.Load))
	for _, o := range r.Outputs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Format, initrd.MiB(o.Size), o.Path)
	}
	tw.Flush()
}

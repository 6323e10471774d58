package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/image"
	"github.com/etcd-rescue/etcd-rescue/initrd"
	"github.com/etcd-rescue/etcd-rescue/internal/version"
)

func newBuildImageCmd() *cobra.Command {
	var (
		format, out, kernel, modules, binary, cmdline, stub, goModDir string
	)
	c := &cobra.Command{
		Use:   "build-image",
		Short: "Build the bootable rescue image (pxe, raw EFI disk, iso)",
		Long: `build-image builds the rescue image: a u-root initramfs with this etcd-rescue
binary as its init-time program and the kernel modules a rescue boot needs,
then writes it as pxe files (vmlinuz, initrd.img, cmdline), a GPT disk image
whose EFI system partition holds a unified kernel image (raw), or a UEFI
bootable ISO. The kernel defaults to the Debian cloud kernel that
` + "`make kernel`" + ` fetches into .cache/kernel. Building needs the Go toolchain and
the etcd-rescue source tree (for u-root's command sources).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !contains(append([]string{"all"}, image.Formats...), format) {
				return fmt.Errorf("--format %q: use %s or all", format, strings.Join(image.Formats, ", "))
			}
			if out == "" {
				return fmt.Errorf("--out DIR is required")
			}
			if (kernel == "") != (modules == "") {
				return fmt.Errorf("--kernel and --modules go together: the modules must match the kernel")
			}
			if kernel == "" {
				root, err := initrd.FindModuleRoot(goModDir)
				if err != nil {
					return err
				}
				if kernel, modules, err = image.CachedKernel(root); err != nil {
					return err
				}
			}
			if binary == "" {
				self, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find this binary (pass --binary): %w", err)
				}
				binary = self
			}
			rep, err := image.BuildRescue(c.Context(), image.Rescue{
				Initrd: initrd.Config{
					Binary: binary, ModulesDir: modules, GoModDir: goModDir, Log: c.ErrOrStderr(),
				},
				Kernel: kernel, Cmdline: cmdline, Stub: stub, Version: version.Version,
				Format: format, Out: out,
			})
			if err != nil {
				return err
			}
			rep.Print(c.OutOrStdout())
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&format, "format", "all", "pxe, raw, iso or all")
	f.StringVar(&out, "out", "", "output directory")
	f.StringVar(&kernel, "kernel", "", "kernel image (default: the kernel `make kernel` fetched)")
	f.StringVar(&modules, "modules", "", "the kernel's /lib/modules/<version> directory, indexed by depmod")
	f.StringVar(&binary, "binary", "", "etcd-rescue binary to put in the image (default: this one); build it static with `make build`")
	f.StringVar(&cmdline, "cmdline", image.DefaultCmdline, "kernel command line")
	f.StringVar(&stub, "stub", image.DefaultStub, "systemd EFI stub for the raw and iso formats")
	f.StringVar(&goModDir, "go-mod-dir", "", "Go module directory that requires u-root (default: the source tree above the current directory)")
	return c
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

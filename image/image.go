// Package image writes the rescue image in the forms a master can boot:
// pxe (kernel, initramfs and command line as files, for PXE/iPXE or QEMU
// -kernel), raw (a GPT disk whose EFI system partition holds a unified
// kernel image as EFI/BOOT/BOOTX64.EFI, so UEFI firmware boots it with no
// boot loader) and iso (El Torito with a UEFI entry, a FAT image holding the
// same BOOTX64.EFI, and a BIOS entry through Debian's ISOLINUX). Every output
// is reproducible: the same inputs give the same bytes.
package image

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DefaultCmdline is the rescue kernel's command line: the serial console
// last so it is /dev/console (the boot's lines go there), quiet kernel, and
// a reboot 30 seconds after a panic.
const DefaultCmdline = "console=tty0 console=ttyS0,115200 quiet panic=30"

// Formats are the output formats, in the order "all" builds them.
var Formats = []string{"pxe", "raw", "iso"}

// Inputs are the parts every format is made of.
type Inputs struct {
	// Kernel is the kernel image (vmlinuz, an EFI-stub bzImage).
	Kernel string
	// Initrd is the compressed initramfs.
	Initrd string
	// Cmdline is the kernel command line. Default DefaultCmdline.
	Cmdline string
	// Stub is the systemd EFI stub for raw and iso. Default DefaultStub.
	Stub string
	// Version is written into the image's os-release.
	Version string
	// ISOLinux and Ldlinux are ISOLINUX's files for the ISO's BIOS entry.
	// Default DefaultISOLinux and DefaultLdlinux.
	ISOLinux, Ldlinux string
}

func (in Inputs) osRelease() string {
	return fmt.Sprintf("NAME=\"etcd-rescue\"\nID=etcd-rescue\nVERSION_ID=%q\nPRETTY_NAME=\"etcd-rescue %s\"\n", in.Version, in.Version)
}

// Output is one written file.
type Output struct {
	Format string
	Path   string
	Size   int64
}

// Build writes the given format ("pxe", "raw", "iso" or "all") into dir and
// returns what it wrote.
func Build(in Inputs, format, dir string) ([]Output, error) {
	if in.Cmdline == "" {
		in.Cmdline = DefaultCmdline
	}
	for _, p := range []string{in.Kernel, in.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("image input: %w", err)
		}
	}
	formats := []string{format}
	if format == "all" {
		formats = Formats
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var outs []Output
	for _, f := range formats {
		var paths []string
		var err error
		switch f {
		case "pxe":
			paths, err = PXE(in, dir)
		case "raw":
			p := filepath.Join(dir, "etcd-rescue.raw")
			paths, err = []string{p}, Raw(in, p)
		case "iso":
			p := filepath.Join(dir, "etcd-rescue.iso")
			paths, err = []string{p}, ISO(in, p)
		default:
			return nil, fmt.Errorf("format %q is unknown: use %s or all", f, strings.Join(Formats, ", "))
		}
		if err != nil {
			return nil, fmt.Errorf("%s image: %w", f, err)
		}
		for _, p := range paths {
			st, err := os.Stat(p)
			if err != nil {
				return nil, err
			}
			outs = append(outs, Output{Format: f, Path: p, Size: st.Size()})
		}
	}
	return outs, nil
}

// PXE copies the kernel and initramfs into dir as vmlinuz and initrd.img and
// writes the command line to dir/cmdline.
func PXE(in Inputs, dir string) ([]string, error) {
	if in.Cmdline == "" {
		in.Cmdline = DefaultCmdline
	}
	k := filepath.Join(dir, "vmlinuz")
	i := filepath.Join(dir, "initrd.img")
	c := filepath.Join(dir, "cmdline")
	if err := copyFile(in.Kernel, k); err != nil {
		return nil, err
	}
	if err := copyFile(in.Initrd, i); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c, []byte(in.Cmdline+"\n"), 0o644); err != nil {
		return nil, err
	}
	return []string{k, i, c}, nil
}

func copyFile(src, dst string) error {
	if same(src, dst) {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func same(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

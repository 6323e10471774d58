package image

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

const (
	isoVolumeID = "ETCD_RESCUE"
	efiImage    = "/efiboot.img"
	isoBlock    = 2048
)

// Debian's ISOLINUX (packages isolinux and syslinux-common), for the ISO's
// BIOS boot entry.
const (
	DefaultISOLinux = "/usr/lib/ISOLINUX/isolinux.bin"
	DefaultLdlinux  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// ISO writes an El Torito ISO to out with two boot entries: BIOS, through
// ISOLINUX loading /vmlinuz and /initrd.img, and UEFI, a FAT image holding
// the unified kernel image as EFI/BOOT/BOOTX64.EFI. go-diskfs stamps the
// volume descriptors and the boot catalog with the current time;
// normalizeISO rewrites every such date to a fixed one afterwards.
func ISO(in Inputs, out string) error {
	if in.Cmdline == "" {
		in.Cmdline = DefaultCmdline
	}
	isolinux, ldlinux := in.ISOLinux, in.Ldlinux
	if isolinux == "" {
		isolinux = DefaultISOLinux
	}
	if ldlinux == "" {
		ldlinux = DefaultLdlinux
	}
	for _, p := range []string{isolinux, ldlinux} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("ISO BIOS boot: %w (install Debian's isolinux and syslinux-common: make deps)", err)
		}
	}
	uki, cleanup, err := buildUKI(in, out)
	if err != nil {
		return err
	}
	defer cleanup()
	st, err := os.Stat(uki)
	if err != nil {
		return err
	}

	// The FAT image the firmware boots from.
	fatPath := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".fat")
	os.Remove(fatPath)
	defer os.Remove(fatPath)
	fd, err := diskfs.Create(fatPath, espSizeFor(st.Size()), diskfs.SectorSizeDefault)
	if err != nil {
		return err
	}
	if err := writeESP(fd, 0, uki); err != nil {
		fd.Close()
		return err
	}
	if err := fd.Close(); err != nil {
		return err
	}
	fatSt, err := os.Stat(fatPath)
	if err != nil {
		return err
	}

	kSt, err := os.Stat(in.Kernel)
	if err != nil {
		return err
	}
	iSt, err := os.Stat(in.Initrd)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	os.Remove(tmp)
	defer os.Remove(tmp)
	size := fatSt.Size() + kSt.Size() + iSt.Size() + 4*mib
	d, err := diskfs.Create(tmp, size, diskfs.SectorSizeDefault)
	if err != nil {
		return err
	}
	d.LogicalBlocksize = isoBlock
	work, err := os.MkdirTemp(filepath.Dir(out), ".iso-work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fs, err := d.CreateFilesystem(diskSpecISO(work))
	if err != nil {
		d.Close()
		return fmt.Errorf("make ISO 9660 filesystem: %w", err)
	}
	if err := fs.Mkdir("/isolinux"); err != nil {
		d.Close()
		return err
	}
	// Not in work: that is the ISO's own tree.
	cfg := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".isolinux.cfg")
	if err := os.WriteFile(cfg, []byte(isolinuxCfg(in.Cmdline)), 0o644); err != nil {
		d.Close()
		return err
	}
	defer os.Remove(cfg)
	for _, f := range []struct{ src, dst string }{
		{fatPath, efiImage},
		{in.Kernel, "/vmlinuz"},
		{in.Initrd, "/initrd.img"},
		{isolinux, "/isolinux/isolinux.bin"},
		{ldlinux, "/isolinux/ldlinux.c32"},
		{cfg, "/isolinux/isolinux.cfg"},
	} {
		if err := copyInto(fs, f.src, f.dst); err != nil {
			d.Close()
			return fmt.Errorf("ISO write %s: %w", f.dst, err)
		}
	}
	bios := &iso9660.ElToritoEntry{
		Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation,
		BootFile: "/isolinux/isolinux.bin", BootTable: true,
	}
	// ISOLINUX loads the rest of itself: the BIOS reads 4 sectors.
	bios.SetLoadSize(4)
	iso, ok := fs.(*iso9660.FileSystem)
	if !ok {
		d.Close()
		return fmt.Errorf("go-diskfs returned %T, not an ISO 9660 filesystem", fs)
	}
	if err := iso.Finalize(iso9660.FinalizeOptions{
		VolumeIdentifier: isoVolumeID,
		ElTorito: &iso9660.ElTorito{
			BootCatalog: "/isolinux/boot.cat",
			Entries: []*iso9660.ElToritoEntry{bios, {
				Platform: iso9660.EFI, Emulation: iso9660.NoEmulation, BootFile: efiImage,
			}},
		},
	}); err != nil {
		d.Close()
		return fmt.Errorf("finalize ISO: %w", err)
	}
	if err := d.Close(); err != nil {
		return err
	}
	if err := normalizeISO(tmp); err != nil {
		return fmt.Errorf("normalize ISO dates: %w", err)
	}
	return os.Rename(tmp, out)
}

// isolinuxCfg boots the kernel at once with the image's command line.
func isolinuxCfg(cmdline string) string {
	return "DEFAULT rescue\nPROMPT 0\nTIMEOUT 0\nLABEL rescue\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd.img " + cmdline + "\n"
}

// copyInto copies a host file into the filesystem being built.
func copyInto(fs filesystem.FileSystem, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := fs.OpenFile(dst, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return out.Close()
}

// fixedDate is 2000-01-01 00:00:00 UTC, ISO 9660's 17-byte form and its
// 7-byte directory record form.
var (
	fixedDateLong  = []byte("2000010100000000\x00")
	fixedDateShort = []byte{100, 1, 1, 0, 0, 0, 0}
)

// normalizeISO rewrites the volume descriptors' dates and the recording
// date of every directory record to fixedDate, so two builds are equal.
func normalizeISO(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, isoBlock)
	var roots [][]byte
	for lba := int64(16); lba < 64; lba++ {
		if _, err := f.ReadAt(buf, lba*isoBlock); err != nil {
			return err
		}
		if string(buf[1:6]) != "CD001" {
			return fmt.Errorf("block %d is not a volume descriptor", lba)
		}
		t := buf[0]
		if t == 255 {
			break
		}
		if t == 1 || t == 2 {
			for _, off := range []int{813, 830, 847, 864} {
				copy(buf[off:off+17], fixedDateLong)
			}
			copy(buf[156+18:156+25], fixedDateShort)
			roots = append(roots, append([]byte(nil), buf[156:156+34]...))
			if _, err := f.WriteAt(buf, lba*isoBlock); err != nil {
				return err
			}
		}
	}
	seen := map[uint32]bool{}
	for _, r := range roots {
		if err := normalizeDir(f, r, seen); err != nil {
			return err
		}
	}
	return nil
}

// normalizeDir rewrites the dates of the records in the directory rec
// points at, and recurses into subdirectories.
func normalizeDir(f *os.File, rec []byte, seen map[uint32]bool) error {
	lba := binary.LittleEndian.Uint32(rec[2:])
	size := binary.LittleEndian.Uint32(rec[10:])
	if seen[lba] {
		return nil
	}
	seen[lba] = true
	data := make([]byte, size)
	if _, err := f.ReadAt(data, int64(lba)*isoBlock); err != nil {
		return err
	}
	var subdirs [][]byte
	for off := 0; off < len(data); {
		n := int(data[off])
		if n == 0 {
			// Records do not cross blocks: skip to the next one.
			off = (off/isoBlock + 1) * isoBlock
			continue
		}
		if off+n > len(data) || n < 34 {
			return fmt.Errorf("bad directory record at %d+%d", lba, off)
		}
		r := data[off : off+n]
		copy(r[18:25], fixedDateShort)
		nameLen := int(r[32])
		isSelfOrParent := nameLen == 1 && (r[33] == 0 || r[33] == 1)
		if r[25]&0x02 != 0 && !isSelfOrParent {
			subdirs = append(subdirs, append([]byte(nil), r...))
		}
		off += n
	}
	if _, err := f.WriteAt(data, int64(lba)*isoBlock); err != nil {
		return err
	}
	for _, s := range subdirs {
		if err := normalizeDir(f, s, seen); err != nil {
			return err
		}
	}
	return nil
}

func diskSpecISO(work string) disk.FilesystemSpec {
	return disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeISO9660, VolumeLabel: isoVolumeID, WorkDir: work, Reproducible: true}
}

package image

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// BootPath is where UEFI firmware looks for a removable medium's loader.
const BootPath = "/EFI/BOOT/BOOTX64.EFI"

// Fixed GUIDs and label keep the raw image reproducible and recognisable.
const (
	diskGUID = "5C9F1A0E-6E2B-4C1B-9D1D-657463647265"
	espGUID  = "5C9F1A0E-6E2B-4C1B-9D1D-657463640001"
	espLabel = "ETCDRESCUE"
)

// sourceDateEpoch is 2000-01-01 00:00:00 UTC.
const sourceDateEpoch = "946684800"

const (
	sector = 512
	mib    = 1 << 20
)

// Raw writes a GPT disk image to out with one EFI system partition holding
// the unified kernel image as EFI/BOOT/BOOTX64.EFI.
func Raw(in Inputs, out string) error {
	uki, cleanup, err := buildUKI(in, out)
	if err != nil {
		return err
	}
	defer cleanup()
	st, err := os.Stat(uki)
	if err != nil {
		return err
	}
	espSize := espSizeFor(st.Size())
	// 1 MiB before the partition (protective MBR, GPT) and 1 MiB after
	// (backup GPT).
	size := espSize + 2*mib
	tmp := out + ".tmp"
	os.Remove(tmp)
	d, err := diskfs.Create(tmp, size, diskfs.SectorSizeDefault)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	start := uint64(mib / sector)
	table := &gpt.Table{
		GUID:               diskGUID,
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{{
			Index: 1, Start: start, End: start + uint64(espSize/sector) - 1,
			Type: gpt.EFISystemPartition, Name: "EFI System", GUID: espGUID,
		}},
	}
	if err := d.Partition(table); err != nil {
		d.Close()
		return fmt.Errorf("write GPT: %w", err)
	}
	if err := writeESP(d, 1, uki); err != nil {
		d.Close()
		return err
	}
	if err := d.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// buildUKI writes the unified kernel image next to out and returns its path.
func buildUKI(in Inputs, out string) (string, func(), error) {
	if in.Cmdline == "" {
		in.Cmdline = DefaultCmdline
	}
	p := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".efi")
	if err := UKI(in, p); err != nil {
		return "", nil, err
	}
	return p, func() { os.Remove(p) }, nil
}

// espSizeFor leaves room for the image plus slack, and at least the 33 MiB a
// FAT32 filesystem of 512-byte clusters needs.
func espSizeFor(n int64) int64 {
	s := (n*5/4 + 4*mib + mib - 1) / mib * mib
	if s < 64*mib {
		s = 64 * mib
	}
	return s
}

// writeESP makes a FAT32 filesystem on partition (0: the whole disk) of d
// and writes the unified kernel image to BootPath.
func writeESP(d *disk.Disk, partition int, uki string) error {
	// go-diskfs dates FAT directory entries from SOURCE_DATE_EPOCH, else
	// from the clock: pin it (unless the caller chose one) for equal builds.
	if os.Getenv("SOURCE_DATE_EPOCH") == "" {
		os.Setenv("SOURCE_DATE_EPOCH", sourceDateEpoch)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{
		Partition: partition, FSType: filesystem.TypeFat32, VolumeLabel: espLabel, Reproducible: true,
	})
	if err != nil {
		return fmt.Errorf("make FAT32 EFI system partition: %w", err)
	}
	if err := fs.Mkdir("/EFI/BOOT"); err != nil {
		return fmt.Errorf("ESP mkdir /EFI/BOOT: %w", err)
	}
	dst, err := fs.OpenFile(BootPath, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("ESP create %s: %w", BootPath, err)
	}
	src, err := os.Open(uki)
	if err != nil {
		return err
	}
	defer src.Close()
	if _, err := io.Copy(dst, src); err != nil {
		return fmt.Errorf("ESP write %s: %w", BootPath, err)
	}
	return dst.Close()
}

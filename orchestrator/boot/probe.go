package boot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
)

// FS is what a superblock says about a filesystem.
type FS struct {
	// Type is the kernel's name for it: ext4, xfs, vfat, iso9660.
	Type  string
	Label string
	UUID  string
}

// ProbeFS reads the superblock of a block device (or image file) and
// identifies the filesystems a rescue boot cares about. It returns a zero FS
// and no error when the device holds none of them (a partition table, swap).
func ProbeFS(dev string) (FS, error) {
	f, err := os.Open(dev)
	if err != nil {
		return FS{}, err
	}
	defer f.Close()
	buf := make([]byte, 64*1024)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return FS{}, fmt.Errorf("read superblock of %s: %w", dev, err)
	}
	return probeBytes(buf[:n]), nil
}

func probeBytes(b []byte) FS {
	// ext2/3/4: superblock at 1024, magic 0xEF53 at offset 56.
	if len(b) >= 2048 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53 {
		sb := b[1024:]
		return FS{Type: "ext4", UUID: uuidString(sb[104:120]), Label: cstr(sb[120:136])}
	}
	// XFS: "XFSB" at 0, uuid at 32, label (12 bytes) at 108.
	if len(b) >= 512 && string(b[0:4]) == "XFSB" {
		return FS{Type: "xfs", UUID: uuidString(b[32:48]), Label: cstr(b[108:120])}
	}
	// ISO 9660: "CD001" in the primary volume descriptor at 32768.
	if len(b) >= 32768+72 && string(b[32769:32774]) == "CD001" {
		return FS{Type: "iso9660", Label: strings.TrimSpace(cstr(b[32808:32840]))}
	}
	// FAT: boot sector signature and a FAT type string.
	if len(b) >= 512 && b[510] == 0x55 && b[511] == 0xAA {
		if string(b[82:87]) == "FAT32" {
			return FS{Type: "vfat", UUID: fatSerial(b[67:71]), Label: fatLabel(b[71:82])}
		}
		if string(b[54:59]) == "FAT12" || string(b[54:59]) == "FAT16" {
			return FS{Type: "vfat", UUID: fatSerial(b[39:43]), Label: fatLabel(b[43:54])}
		}
	}
	return FS{}
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func uuidString(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func fatSerial(b []byte) string {
	v := binary.LittleEndian.Uint32(b)
	return fmt.Sprintf("%04X-%04X", v>>16, v&0xffff)
}

func fatLabel(b []byte) string {
	l := strings.TrimSpace(string(b))
	if l == "NO NAME" {
		return ""
	}
	return l
}

// Matches reports whether fs is the one a plan's disk hint names. Labels
// compare exactly, UUIDs without regard to case.
func (fs FS) Matches(label, uuid string) bool {
	if label == "" && uuid == "" {
		return false
	}
	if label != "" && fs.Label != label {
		return false
	}
	if uuid != "" && !strings.EqualFold(fs.UUID, uuid) {
		return false
	}
	return true
}

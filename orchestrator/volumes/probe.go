package volumes

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
)

type kind int

const (
	kindNone kind = iota
	kindMD
	kindLUKS
	kindLVM
)

func (k kind) String() string {
	return [...]string{"none", "md RAID member", "LUKS", "LVM2 physical volume"}[k]
}

// mdMagic starts an md superblock (little endian).
const mdMagic = 0xa92b4efc

var luksMagic = []byte("LUKS\xba\xbe")

// probe says which layer a device belongs to: a LUKS header at its start,
// an LVM2 label in one of its first four sectors, or an md superblock
// (version 1.1 at its start, 1.2 at 4 KiB, 1.0 and 0.90 near its end).
func probe(dev string, size int64) kind {
	f, err := os.Open(dev)
	if err != nil {
		return kindNone
	}
	defer f.Close()
	b := make([]byte, 8192)
	n, _ := io.ReadFull(f, b)
	b = b[:n]
	switch {
	case bytes.HasPrefix(b, luksMagic):
		return kindLUKS
	case isMD(b, 0) || isMD(b, 4096):
		return kindMD
	}
	for s := 0; s < 4 && len(b) >= (s+1)*512; s++ {
		sec := b[s*512:]
		if string(sec[0:8]) == "LABELONE" && string(sec[24:32]) == "LVM2 001" {
			return kindLVM
		}
	}
	if size >= 128<<10 {
		// 1.0: 8 KiB from the end, 4 KiB aligned; 0.90: the last 64 KiB
		// block.
		for _, off := range []int64{(size - 8192) &^ 4095, (size &^ (64<<10 - 1)) - 64<<10} {
			sb := make([]byte, 4)
			if _, err := f.ReadAt(sb, off); err == nil && binary.LittleEndian.Uint32(sb) == mdMagic {
				return kindMD
			}
		}
	}
	return kindNone
}

func isMD(b []byte, off int) bool {
	return len(b) >= off+8 && binary.LittleEndian.Uint32(b[off:]) == mdMagic && binary.LittleEndian.Uint32(b[off+4:]) == 1
}

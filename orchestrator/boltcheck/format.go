package boltcheck

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
)

// bbolt's on-disk format (go.etcd.io/bbolt internal/common: page.go,
// meta.go, bucket.go). bbolt writes its structs as they are in memory, so
// integers are in the machine's byte order.
var order = binary.NativeEndian

const (
	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	elementSize    = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	bucketSize     = 16 // root pgid u64, sequence u64; an inline bucket's page follows
	metaSize       = 64 // after the page header
	metaSumOffset  = 56 // the checksum covers the meta's bytes before it

	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	freelistPage = 0x10

	bucketLeafFlag = 0x01

	magic   = 0xED0CDAED
	version = 2

	noFreelist = ^uint64(0)

	// maxKeySize is bbolt's limit on a key (bbolt.MaxKeySize).
	maxKeySize = 32768
	// freelistCountOverflow in a free list page's count means the real
	// count is the first id slot.
	freelistCountOverflow = 0xFFFF
)

// header is a page's header.
type header struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

func readHeader(b []byte) header {
	return header{
		id:       order.Uint64(b[0:]),
		flags:    order.Uint16(b[8:]),
		count:    order.Uint16(b[10:]),
		overflow: order.Uint32(b[12:]),
	}
}

func pageType(flags uint16) string {
	switch flags {
	case branchPage:
		return "branch"
	case leafPage:
		return "leaf"
	case metaPage:
		return "meta"
	case freelistPage:
		return "freelist"
	}
	return "unknown"
}

// aPage names a page type in a sentence: "a leaf page (flags 0x2)".
func aPage(flags uint16) string {
	if t := pageType(flags); t != "unknown" {
		return fmt.Sprintf("a %s page (flags %#x)", t, flags)
	}
	return fmt.Sprintf("a page of unknown type (flags %#x)", flags)
}

// meta is a meta page's body.
type meta struct {
	magic, version, pageSize, flags uint32
	root, sequence                  uint64
	freelist, pgid, txid, checksum  uint64
}

// readMeta decodes the meta in a page's first bytes (header included).
func readMeta(page []byte) meta {
	b := page[pageHeaderSize : pageHeaderSize+metaSize]
	return meta{
		magic:    order.Uint32(b[0:]),
		version:  order.Uint32(b[4:]),
		pageSize: order.Uint32(b[8:]),
		flags:    order.Uint32(b[12:]),
		root:     order.Uint64(b[16:]),
		sequence: order.Uint64(b[24:]),
		freelist: order.Uint64(b[32:]),
		pgid:     order.Uint64(b[40:]),
		txid:     order.Uint64(b[48:]),
		checksum: order.Uint64(b[56:]),
	}
}

// metaSum is bbolt's meta checksum: FNV-1a 64 of the bytes before it.
func metaSum(page []byte) uint64 {
	h := fnv.New64a()
	h.Write(page[pageHeaderSize : pageHeaderSize+metaSumOffset])
	return h.Sum64()
}

// validate is bbolt's Meta.Validate: magic, version, checksum.
func validateMeta(page []byte) (meta, string) {
	m := readMeta(page)
	switch {
	case m.magic != magic:
		return m, "not a bbolt meta page (bad magic)"
	case m.version != version:
		return m, "unknown bbolt version"
	case m.checksum != metaSum(page):
		return m, "checksum mismatch"
	}
	return m, ""
}

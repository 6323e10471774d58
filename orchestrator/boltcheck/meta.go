package boltcheck

import (
	"errors"
	"fmt"
	"io"
)

// defaultPageSize is what bbolt falls back to when neither meta page says.
const defaultPageSize = 4096

// readMetas finds the page size and the meta page in use the way bbolt.Open
// does (getPageSize, mmap, DB.meta): the first meta page if valid, else the
// second one probed at each possible page size; then both meta pages at that
// page size, and the valid one with the highest transaction id.
func (c *checker) readMetas() (meta, error) {
	if c.size == 0 {
		return meta{}, c.fileErr(Structure, "the file is empty")
	}
	pageSize, err := c.pageSize()
	if err != nil {
		return meta{}, err
	}
	if pageSize < 1024 || pageSize > 1<<24 || pageSize&(pageSize-1) != 0 {
		return meta{}, c.fileErr(Format, fmt.Sprintf("its meta page gives a page size of %d bytes, not a power of two between 1 KiB and 16 MiB", pageSize))
	}
	if c.size < 2*int64(pageSize) {
		return meta{}, c.fileErr(Structure, fmt.Sprintf("the file is %d bytes, less than its two meta pages of %d bytes", c.size, pageSize))
	}
	var metas [2]meta
	var bad [2]string
	// Tx.Check reads both meta pages as pages: their headers must name
	// them and have a known type, whichever meta is in use.
	var heads [2]header
	buf := make([]byte, pageHeaderSize+metaSize)
	for i := range metas {
		if _, err := c.f.ReadAt(buf, int64(i)*int64(pageSize)); err != nil {
			return meta{}, fmt.Errorf("%s: read meta page %d: %w", c.path, i, err)
		}
		metas[i], bad[i] = validateMeta(buf)
		heads[i] = readHeader(buf)
	}
	if bad[0] != "" && bad[1] != "" {
		return meta{}, c.fileErr(Structure, fmt.Sprintf("no valid meta page: it is not a bbolt file, or both its meta pages are damaged (meta page 0: %s; meta page 1: %s)", bad[0], bad[1]))
	}
	for i := range heads {
		if h := heads[i]; h.id != uint64(i) || pageType(h.flags) == "unknown" {
			return meta{}, c.pageErr(Structure, uint64(i), fmt.Sprintf("the meta page's header is damaged (it says page %d, flags %#x)", h.id, h.flags))
		}
	}
	// bbolt prefers the higher transaction id when it is valid.
	use := 0
	if metas[1].txid > metas[0].txid {
		use = 1
	}
	if bad[use] != "" {
		use = 1 - use
	}
	if other := 1 - use; bad[other] != "" {
		c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("meta page %d is damaged (%s); bbolt and etcd use meta page %d (txid %d)", other, bad[other], use, metas[use].txid))
	}
	c.pageSz = int64(pageSize)
	c.rep.PageSize = pageSize
	c.rep.Meta = use
	c.rep.TxID = metas[use].txid
	return metas[use], nil
}

// pageSize is bbolt's DB.getPageSize.
func (c *checker) pageSize() (int, error) {
	buf := make([]byte, 0x1000)
	readable := false
	if n, err := c.f.ReadAt(buf, 0); err == nil && n == len(buf) {
		readable = true
		if m, bad := validateMeta(buf); bad == "" {
			return int(m.pageSize), nil
		}
	}
	for i := 0; i <= 14; i++ {
		pos := int64(1024) << i
		if pos >= c.size-1024 {
			break
		}
		clear(buf)
		n, err := c.f.ReadAt(buf, pos)
		if (err == nil && n == len(buf)) || (errors.Is(err, io.EOF) && int64(n) == c.size-pos) {
			readable = true
			if m, bad := validateMeta(buf); bad == "" {
				return int(m.pageSize), nil
			}
		}
	}
	if readable {
		return defaultPageSize, nil
	}
	return 0, c.fileErr(Structure, "no valid meta page: it is not a bbolt file, or both its meta pages are damaged")
}

// checkMeta checks the chosen meta's page ids against the file.
func (c *checker) checkMeta(m meta) error {
	hwm := m.pgid
	c.hwm = hwm
	if hwm < 2 {
		return c.fileErr(Format, fmt.Sprintf("its meta page says the file spans %d pages, fewer than its two meta pages", hwm))
	}
	if hwm > uint64(c.size/c.pageSz) {
		return c.fileErr(Format, fmt.Sprintf("the file is truncated: its meta page says it spans %d pages of %d bytes (%d bytes) but it has %d bytes",
			hwm, c.pageSz, hwm*uint64(c.pageSz), c.size))
	}
	if m.root < 2 || m.root >= hwm {
		return c.fileErr(c.outsideKind(m.root), fmt.Sprintf("its root bucket is page %d, outside the data pages [2, %d)", m.root, hwm))
	}
	if m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= hwm) {
		return c.fileErr(c.outsideKind(m.freelist), fmt.Sprintf("its free list is page %d, outside the data pages [2, %d)", m.freelist, hwm))
	}
	return nil
}

// outsideKind is the Kind of a pointer to page id outside [2, hwm): bbolt
// itself writes none (Meta.Write panics), but Tx.Check only rejects ids
// past the high water mark (and 0 and 1, the meta pages, as used twice); a
// pointer to the page right at the mark it reads as any other.
func (c *checker) outsideKind(id uint64) Kind {
	if id == 0 || id == c.hwm {
		return Format
	}
	return Structure
}

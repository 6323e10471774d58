package boltcheck

import (
	"errors"
	"fmt"
)

// level holds the buffers of one level of the walk. A page's buffer and
// its two key slots stay valid while deeper levels are walked, which is
// what key order checks across levels need.
type level struct {
	buf   []byte
	slots [2][]byte
	// run holds pages first..first+n-1, read in one pread: the siblings a
	// branch page points to are usually next to each other in the file.
	run      []byte
	first, n uint64
	view     pageView
}

// inRun reports whether page id was read ahead.
func (lv *level) inRun(id uint64) bool { return id >= lv.first && id-lv.first < lv.n }

// pageView is a page being checked: its header and its first bytes; bytes
// further into the page (large pages' later keys) are read on demand.
type pageView struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
	// span is the page's size with its overflow pages.
	span int64
	// off is the page's offset in the file; -1 for an inline bucket's
	// page, which buf holds whole.
	off int64
	buf []byte
	lvl *level
	c   *checker
}

var errOutside = errors.New("outside its page")

// readPage reads page id (below the high water mark) at level l (from its
// read-ahead, or into its buffer) and checks its header: its id, and its
// overflow pages.
func (c *checker) readPage(l int, id uint64, hwm uint64) (*pageView, error) {
	lv := c.level(l)
	off := int64(id) * c.pageSz
	var buf []byte
	if lv.inRun(id) {
		at := int64(id-lv.first) * c.pageSz
		buf = lv.run[at:]
	} else {
		buf = grow(&lv.buf, int(c.pageSz))
		if _, err := c.f.ReadAt(buf, off); err != nil {
			return nil, fmt.Errorf("%s: read page %d: %w", c.path, id, err)
		}
	}
	h := readHeader(buf)
	if h.id != id {
		return nil, c.pageErr(Structure, id, fmt.Sprintf("its header says it is page %d: the page is damaged or a pointer to it is", h.id))
	}
	if uint64(h.overflow) >= hwm-id {
		return nil, c.pageErr(Format, id, fmt.Sprintf("its %d overflow pages run past the file's %d pages", h.overflow, hwm))
	}
	p := &lv.view
	*p = pageView{id: id, flags: h.flags, count: h.count, overflow: h.overflow,
		span: (int64(h.overflow) + 1) * c.pageSz, off: off, lvl: lv, c: c}
	// A page with overflow pages (a large value) is read up to the end of
	// its elements; its keys past that are read one by one, its values not
	// at all.
	n := c.pageSz
	if h.flags == branchPage || h.flags == leafPage {
		if end := pageHeaderSize + int64(h.count)*elementSize; end > n && end <= p.span {
			n = end
		}
	}
	if int64(len(buf)) >= n {
		// A read-ahead may hold the overflow pages too: what it holds of
		// the page is used, not read again.
		p.buf = buf[:max(n, min(int64(len(buf)), p.span))]
		return p, nil
	}
	// A page with overflow pages, past what was read.
	have := int64(len(buf))
	if lv.inRun(id) {
		have = 0
	}
	p.buf = growKeep(&lv.buf, int(n))
	if _, err := c.f.ReadAt(p.buf[have:], off+have); err != nil {
		return nil, fmt.Errorf("%s: read page %d: %w", c.path, id, err)
	}
	return p, nil
}

// maxRun bounds a read-ahead: 64 pages (256 KiB at 4 KiB pages).
const maxRun = 64

// readAhead reads, in one pread into level l's run, branch page p's
// children from child i on while they lie close together in the file.
func (c *checker) readAhead(l int, p *pageView, i int) error {
	lv := c.level(l)
	first := order.Uint64(p.elem(i)[8:])
	if lv.inRun(first) || first < 2 || first >= c.hwm {
		return nil
	}
	last := first
	for j := i + 1; j < int(p.count); j++ {
		next := order.Uint64(p.elem(j)[8:])
		// Siblings a few pages apart (overflow pages between) still share
		// the read; a child out of range is reported by the walk.
		if next <= last || next-last > 4 || next-first >= maxRun || next >= c.hwm {
			break
		}
		last = next
	}
	if last == first {
		return nil
	}
	n := last - first + 1
	buf := grow(&lv.run, int(int64(n)*c.pageSz))
	if _, err := c.f.ReadAt(buf, int64(first)*c.pageSz); err != nil {
		return fmt.Errorf("%s: read pages %d-%d: %w", c.path, first, last, err)
	}
	lv.first, lv.n = first, n
	return nil
}

// inlinePage is an inline bucket's page, held in value (copied into level
// l's buffer); parent is the leaf page holding it, named in errors.
func (c *checker) inlinePage(l int, parent uint64, value []byte) *pageView {
	lv := c.level(l)
	buf := grow(&lv.buf, len(value))
	copy(buf, value)
	h := readHeader(buf)
	p := &lv.view
	*p = pageView{id: parent, flags: h.flags, count: h.count, overflow: h.overflow,
		span: int64(len(buf)), off: -1, buf: buf, lvl: lv, c: c}
	return p
}

// bytes returns n bytes at offset at of the page, from its buffer or read
// into key slot s. They stay valid until slot s of this level is reused.
func (p *pageView) bytes(s int, at, n int64) ([]byte, error) {
	if at < 0 || n < 0 || at > p.span || n > p.span-at {
		return nil, errOutside
	}
	if at+n <= int64(len(p.buf)) {
		return p.buf[at : at+n], nil
	}
	b := grow(&p.lvl.slots[s], int(n))
	if _, err := p.c.f.ReadAt(b, p.off+at); err != nil {
		return nil, fmt.Errorf("%s: read page %d: %w", p.c.path, p.id, err)
	}
	return b, nil
}

// elem returns the 16 bytes of element i (the count was checked to fit).
func (p *pageView) elem(i int) []byte {
	at := pageHeaderSize + i*elementSize
	return p.buf[at : at+elementSize]
}

func (c *checker) level(l int) *level {
	for len(c.levels) <= l {
		c.levels = append(c.levels, &level{})
	}
	return c.levels[l]
}

// grow returns (*b)[:n], reallocating only when n exceeds its capacity.
func grow(b *[]byte, n int) []byte {
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return *b
}

// growKeep is grow that keeps the bytes already in *b.
func growKeep(b *[]byte, n int) []byte {
	if cap(*b) < n {
		nb := make([]byte, n)
		copy(nb, *b)
		*b = nb
	}
	*b = (*b)[:n]
	return *b
}

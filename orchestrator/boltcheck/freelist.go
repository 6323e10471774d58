package boltcheck

import "fmt"

// readFreelist reads the free list page(s) into c.free, as bbolt's
// freelist Read does, and checks what Tx.Check checks (a page freed twice)
// and what it does not (ids outside the data pages).
func (c *checker) readFreelist(id uint64) error {
	p, err := c.readPage(0, id, c.hwm)
	if err != nil {
		return err
	}
	if p.flags != freelistPage {
		return c.pageErr(Structure, id, fmt.Sprintf("the meta page names it as the free list but it is %s", aPage(p.flags)))
	}
	c.rep.FreelistPages = uint64(p.overflow) + 1
	for i := id; i <= id+uint64(p.overflow); i++ {
		c.used.set(i)
	}
	start, count := int64(0), int64(p.count)
	if p.count == freelistCountOverflow {
		b, err := p.bytes(0, pageHeaderSize, 8)
		if err != nil {
			return c.pageErr(Format, id, "the free list's count does not fit in its page")
		}
		n := order.Uint64(b)
		if n > uint64(p.span/8) {
			return c.pageErr(Format, id, fmt.Sprintf("the free list says it holds %d ids but its %d bytes hold at most %d", n, p.span, p.span/8))
		}
		start, count = 1, int64(n)
	}
	if end := pageHeaderSize + (start+count)*8; end > p.span {
		return c.pageErr(Format, id, fmt.Sprintf("the free list says it holds %d ids but its %d pages end at byte %d", count, p.overflow+1, p.span))
	}
	// Stream the ids in chunks: a free list can be megabytes.
	const chunk = 4096
	for i := int64(0); i < count; i += chunk {
		n := min(chunk, count-i)
		b, err := p.bytes(0, pageHeaderSize+(start+i)*8, n*8)
		if err != nil {
			return err
		}
		for j := int64(0); j < n; j++ {
			free := order.Uint64(b[j*8:])
			switch {
			case free < 2 || free >= c.hwm:
				return c.pageErr(Format, id, fmt.Sprintf("the free list holds page %d, outside the data pages [2, %d)", free, c.hwm))
			case c.free.has(free):
				return c.pageErr(Structure, free, "freed twice: the free list holds it more than once")
			case c.used.has(free):
				return c.pageErr(Format, free, fmt.Sprintf("the free list holds one of its own pages (%d-%d)", id, id+uint64(p.overflow)))
			}
			c.free.set(free)
		}
	}
	c.rep.FreePages = uint64(count)
	c.done += uint64(count) + uint64(p.overflow) + 1
	return c.progress(false)
}

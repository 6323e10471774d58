package boltcheck

import (
	"bytes"
	"context"
	"fmt"
	"os"
)

// checker is one run of Check.
type checker struct {
	ctx    context.Context
	f      *os.File
	path   string
	size   int64
	opts   Options
	rep    Report
	pageSz int64
	hwm    uint64
	// used and free hold a bit per page below the high water mark: reached
	// by the walk (or a meta or free list page), and on the free list.
	used, free bitset
	noFree     bool
	levels     []*level
	// done counts pages accounted for; reported is done at the last
	// Progress call.
	done, reported uint64
	// keyBucket is set once etcd's "key" bucket is found; rev is the last
	// revision read from it.
	keyBucket bool
	rev       revisionOrder
	// pipe runs Options.Values, when set.
	pipe *valuePipe
}

// bucket is the bucket being walked.
type bucket struct {
	// path names it in errors: "key", "a/b"; "" is the root bucket.
	path string
	// root is the root bucket, whose entries are the top-level buckets.
	root bool
	// inline buckets live in their parent's leaf; bbolt's Tx.Check skips
	// them, so what is wrong inside one is a Format error.
	inline bool
	// etcdKeys is etcd's "key" bucket.
	etcdKeys bool
	// name is a top-level bucket's name (nil below the top level), for
	// Options.Values.
	name []byte
}

func (b *bucket) String() string {
	if b.root {
		return "the root bucket"
	}
	return fmt.Sprintf("bucket %q", b.path)
}

func (c *checker) run() error {
	m, err := c.readMetas()
	if err != nil {
		return err
	}
	if err := c.checkMeta(m); err != nil {
		return err
	}
	c.rep.Path, c.rep.FileSize, c.rep.Pages = c.path, c.size, c.hwm
	c.used, c.free = newBitset(c.hwm), newBitset(c.hwm)
	c.used.set(0)
	c.used.set(1)
	c.done = 2
	c.noFree = m.freelist == noFreelist
	c.rep.meta = m
	if !c.noFree {
		if err := c.readFreelist(m.freelist); err != nil {
			return err
		}
	}
	root := &bucket{root: true}
	if _, err := c.visit(0, m.root, nil, nil, root); err != nil {
		return err
	}
	if c.noFree {
		// bbolt rebuilds the free list from the unreachable pages.
		c.rep.FreePages = c.hwm - c.used.count()
		c.done = c.hwm
		if c.opts.ListUnreachable {
			c.rep.Unreachable = make([]uint64, 0, c.rep.FreePages)
			for id := uint64(2); id < c.hwm; id++ {
				if !c.used.has(id) {
					c.rep.Unreachable = append(c.rep.Unreachable, id)
				}
			}
		}
	} else if id, ok := firstClearBoth(c.used, c.free, 2, c.hwm); ok {
		return c.pageErr(Structure, id, "neither reachable from the meta page nor on the free list (unreachable unfreed)")
	}
	if !c.opts.SkipEtcd && !c.keyBucket {
		return c.fileErr(Etcd, `it has no "key" bucket: it is not an etcd backend or snapshot`)
	}
	return c.progress(true)
}

// visit checks the tree under page id (a branch or leaf page of bucket b)
// at walk level l: every key in [lo, hi) (nil: unbounded), as bbolt's
// recursivelyCheckPageKeyOrder has it. It returns the subtree's last key.
func (c *checker) visit(l int, id uint64, lo, hi []byte, b *bucket) ([]byte, error) {
	if l >= MaxDepth {
		return nil, c.pageErr(Format, id, fmt.Sprintf("%s: the walk is %d levels deep, more than any bbolt file: its pages point in a chain", b, l))
	}
	p, err := c.readPage(l, id, c.hwm)
	if err != nil {
		return nil, err
	}
	if p.flags != branchPage && p.flags != leafPage {
		return nil, c.pageErr(Structure, id, fmt.Sprintf("%s: %s where a branch or leaf page belongs", b, aPage(p.flags)))
	}
	if err := c.markUsed(p, b); err != nil {
		return nil, err
	}
	if end := pageHeaderSize + int64(p.count)*elementSize; end > p.span {
		return nil, c.pageErr(Format, id, fmt.Sprintf("%s: its %d elements need %d bytes, more than its %d", b, p.count, end, p.span))
	}
	if p.flags == branchPage {
		return c.branch(l, p, lo, hi, b)
	}
	return c.leaf(l, p, lo, hi, b)
}

// markUsed marks a page and its overflow pages reached.
func (c *checker) markUsed(p *pageView, b *bucket) error {
	for i := p.id; i <= p.id+uint64(p.overflow); i++ {
		if c.used.has(i) {
			what := "page"
			if i != p.id {
				what = fmt.Sprintf("overflow page of page %d", p.id)
			}
			return c.pageErr(Structure, i, fmt.Sprintf("%s: %s reached twice (multiple references): two pointers share it", b, what))
		}
		if c.free.has(i) {
			if i == p.id {
				return c.pageErr(Structure, i, fmt.Sprintf("%s: in use and on the free list (reachable freed)", b))
			}
			return c.pageErr(Format, i, fmt.Sprintf("%s: overflow page of page %d, and on the free list", b, p.id))
		}
		c.used.set(i)
	}
	if p.flags == branchPage {
		c.rep.BranchPages++
	} else {
		c.rep.LeafPages++
	}
	c.rep.OverflowPages += uint64(p.overflow)
	c.done += uint64(p.overflow) + 1
	return c.progress(false)
}

func (c *checker) branch(l int, p *pageView, lo, hi []byte, b *bucket) ([]byte, error) {
	n := int(p.count)
	if n == 0 {
		return nil, nil
	}
	key, err := c.branchKey(p, 0)
	if err != nil {
		return nil, err
	}
	running := lo
	var last []byte
	for i := 0; i < n; i++ {
		if err := c.order(p, b, "branch", i, key, running, hi, Structure); err != nil {
			return nil, err
		}
		childHi, next := hi, []byte(nil)
		if i+1 < n {
			if next, err = c.branchKey(p, i+1); err != nil {
				return nil, err
			}
			childHi = next
		}
		child := order.Uint64(p.elem(i)[8:])
		if child < 2 || child >= c.hwm {
			return nil, c.pageErr(c.outsideKind(child), p.id, fmt.Sprintf("%s: branch element %d points to page %d, outside the data pages [2, %d)", b, i, child, c.hwm))
		}
		if err := c.readAhead(l+1, p, i); err != nil {
			return nil, err
		}
		if last, err = c.visit(l+1, child, key, childHi, b); err != nil {
			return nil, err
		}
		running, key = last, next
	}
	return last, nil
}

// branchKey reads branch element i's key into key slot i%2.
func (c *checker) branchKey(p *pageView, i int) ([]byte, error) {
	e := p.elem(i)
	pos, ksize := order.Uint32(e[0:]), order.Uint32(e[4:])
	if ksize > maxKeySize {
		return nil, c.pageErr(Format, p.id, fmt.Sprintf("branch element %d has a %d-byte key, longer than bbolt allows (%d)", i, ksize, maxKeySize))
	}
	k, err := p.bytes(i%2, int64(pageHeaderSize+i*elementSize)+int64(pos), int64(ksize))
	if err == errOutside {
		return nil, c.pageErr(Format, p.id, fmt.Sprintf("branch element %d's key (at %d, %d bytes) lies outside the page", i, pos, ksize))
	}
	return k, err
}

// leaf checks a leaf page (or an inline bucket's page) of bucket b.
func (c *checker) leaf(l int, p *pageView, lo, hi []byte, b *bucket) ([]byte, error) {
	kind := Structure
	if b.inline {
		kind = Format
	}
	running := lo
	var last []byte
	for i := 0; i < int(p.count); i++ {
		e := p.elem(i)
		flags, pos := order.Uint32(e[0:]), order.Uint32(e[4:])
		ksize, vsize := order.Uint32(e[8:]), order.Uint32(e[12:])
		if ksize > maxKeySize {
			return nil, c.pageErr(Format, p.id, fmt.Sprintf("%s: leaf element %d has a %d-byte key, longer than bbolt allows (%d)", b, i, ksize, maxKeySize))
		}
		kAt := int64(pageHeaderSize+i*elementSize) + int64(pos)
		key, err := p.bytes(i%2, kAt, int64(ksize))
		if err == errOutside {
			return nil, c.pageErr(Format, p.id, fmt.Sprintf("%s: leaf element %d's key (at %d, %d bytes) lies outside the page", b, i, pos, ksize))
		} else if err != nil {
			return nil, err
		}
		vAt := kAt + int64(ksize)
		if int64(vsize) > p.span-vAt {
			return nil, c.pageErr(Format, p.id, fmt.Sprintf("%s: leaf element %d's %d-byte value runs past the page", b, i, vsize))
		}
		if err := c.order(p, b, "leaf", i, key, running, hi, kind); err != nil {
			return nil, err
		}
		running, last = key, key
		if flags&^bucketLeafFlag != 0 {
			return nil, c.pageErr(Format, p.id, fmt.Sprintf("%s: leaf element %d has unknown flags %#x", b, i, flags))
		}
		if flags&bucketLeafFlag == 0 {
			c.rep.Entries++
			if b.etcdKeys {
				if err := c.revision(p, i, key); err != nil {
					return nil, err
				}
			}
			if b.name != nil && c.opts.Values != nil {
				if err := c.values(p, b, i, key, vAt, int(vsize)); err != nil {
					return nil, err
				}
			}
			continue
		}
		if b.name != nil && c.opts.Values != nil {
			if err := c.valueless(p, b, i, key); err != nil {
				return nil, err
			}
		}
		// The value goes in the slot key i-1 used: it is no longer needed.
		value, err := p.bytes((i+1)%2, vAt, int64(vsize))
		if err != nil {
			return nil, err
		}
		if err := c.subBucket(l, p, b, key, value); err != nil {
			return nil, err
		}
	}
	return last, nil
}

// subBucket checks the bucket whose header is value, named key in b.
func (c *checker) subBucket(l int, p *pageView, b *bucket, key, value []byte) error {
	child := &bucket{path: string(key)}
	if !b.root {
		child.path = b.path + "/" + child.path
	}
	child.etcdKeys = b.root && !c.opts.SkipEtcd && child.path == "key"
	if b.root {
		child.name = []byte(child.path)
		if c.opts.Values != nil {
			if err := c.valueless(p, child, -1, nil); err != nil {
				return err
			}
		}
	}
	c.keyBucket = c.keyBucket || child.etcdKeys
	c.rep.Buckets++
	switch {
	case b.etcdKeys:
		return c.pageErr(Etcd, p.id, fmt.Sprintf("%s: holds a bucket %q; etcd keeps only revisions there", b, key))
	case len(value) < bucketSize:
		return c.pageErr(Format, p.id, fmt.Sprintf("%s: its value is %d bytes, shorter than a bucket header", child, len(value)))
	case b.inline:
		return c.pageErr(Format, p.id, fmt.Sprintf("%s: inside an inline bucket, which bbolt never writes", child))
	}
	root := order.Uint64(value)
	if root != 0 {
		if root < 2 || root >= c.hwm {
			return c.pageErr(c.outsideKind(root), p.id, fmt.Sprintf("%s: its root is page %d, outside the data pages [2, %d)", child, root, c.hwm))
		}
		_, err := c.visit(l+1, root, nil, nil, child)
		return err
	}
	child.inline = true
	in := value[bucketSize:]
	switch {
	case len(in) < pageHeaderSize:
		return c.pageErr(Format, p.id, fmt.Sprintf("%s: inline, but its %d bytes hold no page", child, len(in)))
	case int64(len(in)) > c.pageSz:
		return c.pageErr(Format, p.id, fmt.Sprintf("%s: inline, but its %d bytes are more than a page", child, len(in)))
	}
	if l+1 >= MaxDepth {
		return c.pageErr(Format, p.id, fmt.Sprintf("%s: the walk is %d levels deep, more than any bbolt file", child, l+1))
	}
	ip := c.inlinePage(l+1, p.id, in)
	if ip.flags != leafPage {
		return c.pageErr(Format, p.id, fmt.Sprintf("%s: inline, but its page is %s, not a leaf", child, aPage(ip.flags)))
	}
	if end := pageHeaderSize + int64(ip.count)*elementSize; end > ip.span {
		return c.pageErr(Format, p.id, fmt.Sprintf("%s: inline, and its %d elements need %d bytes, more than its %d", child, ip.count, end, ip.span))
	}
	_, err := c.leaf(l+1, ip, nil, nil, child)
	return err
}

// values hands leaf element i of top-level bucket b, its value n bytes at
// offset at of page p, to Options.Values: a copy of a value in p's buffer;
// one further on (on overflow pages) read from the file by whichever
// goroutine is ahead: the walk when batches wait for Values, else Values.
func (c *checker) values(p *pageView, b *bucket, i int, key []byte, at int64, n int) error {
	if c.pipe == nil {
		// The value goes in the slot key i-1 used: it is no longer needed.
		value, err := p.bytes((i+1)%2, at, int64(n))
		if err != nil {
			return err
		}
		return c.callValues(p, b, i, key, value)
	}
	inBuf := at+int64(n) <= int64(len(p.buf))
	if n > 0 && !inBuf && !walkReads(c.pipe) {
		return c.pipe.addAt(b, p.id, i, key, n, p.off+at)
	}
	value, err := c.pipe.add(b, p.id, i, key, n)
	switch {
	case err != nil || n == 0:
		return err
	case inBuf:
		copy(value, p.buf[at:])
	default:
		if _, err := c.f.ReadAt(value, p.off+at); err != nil {
			return fmt.Errorf("%s: read page %d: %w", c.path, p.id, err)
		}
	}
	return nil
}

// valueless hands Options.Values a bucket's name (i < 0) or a bucket
// nested in top-level bucket b (leaf element i): no value.
func (c *checker) valueless(p *pageView, b *bucket, i int, key []byte) error {
	if c.pipe == nil {
		return c.callValues(p, b, i, key, nil)
	}
	_, err := c.pipe.add(b, p.id, i, key, -1)
	return err
}

// callValues calls Options.Values on the walk's goroutine, when there is
// no second core for it.
func (c *checker) callValues(p *pageView, b *bucket, i int, key, value []byte) error {
	if err := c.opts.Values(b.name, key, value); err != nil {
		return valuesErr(c.path, entry{b: b, page: p.id, i: i}, key, err)
	}
	return nil
}

// order is bbolt's verifyKeyOrder: key i of a page must be above the
// previous key (or, for the first, not below lo) and below hi.
func (c *checker) order(p *pageView, b *bucket, typ string, i int, key, prev, hi []byte, kind Kind) error {
	if i == 0 && prev != nil && bytes.Compare(prev, key) > 0 {
		return c.pageErr(kind, p.id, fmt.Sprintf("%s: %s key[0] %x is below the key %x its parent gives it", b, typ, key, prev))
	}
	if i > 0 {
		switch bytes.Compare(prev, key) {
		case 1:
			return c.pageErr(kind, p.id, fmt.Sprintf("%s: %s key[%d] %x sorts before the key before it, %x", b, typ, i, key, prev))
		case 0:
			return c.pageErr(kind, p.id, fmt.Sprintf("%s: %s key[%d] %x repeats the key before it", b, typ, i, key))
		}
	}
	if hi != nil && bytes.Compare(key, hi) >= 0 {
		return c.pageErr(kind, p.id, fmt.Sprintf("%s: %s key[%d] %x is not below %x, the next key of its parent", b, typ, i, key, hi))
	}
	return nil
}

// progress reports every few thousand pages (and at the end when final),
// and stops the walk when the context ends.
func (c *checker) progress(final bool) error {
	const every = 4096
	if !final && c.done-c.reported < every {
		return nil
	}
	c.reported = c.done
	if c.opts.Progress != nil {
		c.opts.Progress(Progress{Pages: c.done, PagesTotal: c.hwm, Bytes: int64(c.done) * c.pageSz, BytesTotal: int64(c.hwm) * c.pageSz})
	}
	if err := c.ctx.Err(); err != nil {
		return fmt.Errorf("%s: structure check stopped: %w", c.path, err)
	}
	return nil
}

func (c *checker) pageErr(k Kind, id uint64, msg string) error {
	return &Error{Path: c.path, Page: int64(id), Kind: k, Msg: msg}
}

func (c *checker) fileErr(k Kind, msg string) error {
	return &Error{Path: c.path, Page: -1, Kind: k, Msg: msg}
}

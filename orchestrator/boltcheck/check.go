// Package boltcheck checks the structure of a bbolt file (an etcd backend or
// snapshot) in one pass that scales with the file: every page is read once
// with pread into reused buffers, and which pages are in use or free is kept
// in two bitsets, so memory does not follow the file size and no mmap is
// held.
//
// It checks what bbolt's own Tx.Check (with bbolt.Open) checks: the meta
// pages (the valid one with the highest transaction id is used, as bbolt
// does), every page below the high water mark reached exactly once from the
// root bucket or on the free list and never both, page ids and types, the
// free list freeing a page once, branch and leaf key order within each
// bucket's tree, sub-buckets. Those are Structure errors.
//
// It checks more (Format errors, which Tx.Check lets through because it
// reads past the damage or never looks): keys and values inside their page
// and keys no longer than bbolt allows, free list ids inside the data pages
// and off the meta and free list pages, overflow pages inside the high
// water mark and off the free list, inline buckets' pages (their type, key
// order, no buckets inside), a file shorter than its high water mark, a walk
// deeper than MaxDepth. And etcd's schema (Etcd errors): a "key" bucket
// whose keys are revisions as etcd's mvcc package writes them (8-byte main,
// '_', 8-byte sub, an optional 't' tombstone mark, both numbers
// non-negative, strictly increasing). Values are read only for Options.Values.
//
// Memory: two bitsets of pages/8 bytes each (512 KiB together for an 8 GiB
// file of 4 KiB pages), plus per level of the tree walk (about ten for etcd,
// at most MaxDepth) a page buffer, two key buffers and a read-ahead of at
// most 64 pages (256 KiB): under 4 MiB for any etcd file. A page with
// overflow pages costs its first page and its keys. Options.Values adds
// the batches the walk hands its entries over in, 4 MiB, and a buffer for
// one value: more only while a value larger than 1 MiB is in one.
package boltcheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
)

// Kind says which family of rule a file broke.
type Kind int

const (
	// Structure is a rule bbolt's own Tx.Check (or bbolt.Open) enforces too:
	// meta pages, page ids and types, reachability, double use, key order.
	Structure Kind = iota
	// Format is a rule of bbolt's on-disk format that Tx.Check does not
	// verify (it reads past the damage or tolerates it): keys and values
	// inside their page, free list ids inside the file and off the meta and
	// free list pages, overflow inside the high water mark, the contents of
	// inline buckets, a file shorter than its high water mark.
	Format
	// Etcd is a rule of etcd's schema: the "key" bucket holds revisions.
	Etcd
)

func (k Kind) String() string {
	switch k {
	case Structure:
		return "structure"
	case Format:
		return "format"
	case Etcd:
		return "etcd"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a damaged file: which file, which page, what is wrong.
type Error struct {
	Path string
	// Page is the page id the damage was found on, or -1 for the file as a
	// whole (its size, its meta pages).
	Page int64
	Kind Kind
	Msg  string
}

func (e *Error) Error() string {
	if e.Page < 0 {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("%s: page %d: %s", e.Path, e.Page, e.Msg)
}

// KindOf returns the Kind of a check error, and false for other errors
// (the file could not be read, the context ended).
func KindOf(err error) (Kind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	return 0, false
}

// Options tunes Check.
type Options struct {
	// SkipEtcd checks any bbolt file: no "key" bucket is required and its
	// keys are not read as revisions. Default false (an etcd file).
	SkipEtcd bool
	// Progress, if set, is called every few thousand pages and once at the
	// end, from the goroutine that called Check.
	Progress func(Progress)
	// Values, if set, is called in key order for each top-level bucket:
	// with its name (key and value nil) before its entries, then with each
	// of its entries (value nil for a bucket nested in it). This is the
	// order etcdutl's snapshot status hashes them in. The calls come one
	// at a time from a goroutine Check starts for them (not the caller's),
	// so their work overlaps the walk's on a second core; Check returns
	// after the last one. With GOMAXPROCS 1 they come from the walk's
	// goroutine, the caller's. The slices are valid during the call only.
	// Values costs a read and a copy of every value (those on overflow
	// pages too). An error it returns stops the check and is reported as
	// an Etcd error on that page, ahead of any damage the walk found past
	// that entry meanwhile: the same error as if the walk had waited.
	Values func(bucket, key, value []byte) error
	// ListUnreachable fills Report.Unreachable for a file written without
	// a free list (etcd writes its files so), for SyncFreelist.
	ListUnreachable bool
}

// Progress is how far Check is.
type Progress struct {
	// Pages and Bytes done out of the file's PagesTotal and BytesTotal
	// (pages below the high water mark, free ones counted when read from
	// the free list).
	Pages, PagesTotal uint64
	Bytes, BytesTotal int64
}

// Report is what a healthy file holds.
type Report struct {
	Path     string
	FileSize int64
	PageSize int
	// Pages is the high water mark: pages the database spans.
	Pages uint64
	// Meta is the meta page used (0 or 1): the valid one with the highest
	// transaction id, as bbolt picks it; TxID is its transaction id.
	Meta int
	TxID uint64
	// BranchPages, LeafPages count tree pages; OverflowPages the pages
	// that continue them; FreelistPages the free list's own pages.
	BranchPages, LeafPages, OverflowPages, FreelistPages uint64
	// FreePages is the free list's count (or, for a file written without
	// a free list, the unreachable pages bbolt would rebuild it from).
	FreePages uint64
	// Buckets counts buckets at every level (inline ones included);
	// Entries counts key/value pairs in all of them.
	Buckets, Entries uint64
	// Keys is the number of revisions in etcd's "key" bucket, Tombstones
	// how many of them are deletions; MinRevision and MaxRevision are the
	// first and last main revision (0 when the bucket is empty).
	Keys, Tombstones         uint64
	MinRevision, MaxRevision int64
	// Warnings are findings that bbolt and etcd tolerate, such as one
	// damaged meta page when the other is valid.
	Warnings []string
	// Unreachable lists, in order, the pages bbolt would rebuild its free
	// list from (those below the high water mark no tree reaches), when
	// Options.ListUnreachable and the file has no free list.
	Unreachable []uint64
	// meta is the meta page used, for SyncFreelist.
	meta meta
}

// MaxDepth bounds the walk: B+tree levels plus nested buckets. A healthy
// etcd file is about ten deep; deeper means pages that point in a chain.
const MaxDepth = 64

// Check reads the bbolt file at path and checks its whole structure. It
// returns an *Error for a damaged file, another error when the file cannot
// be read or ctx ends. It never panics: a panic inside is a bug, returned as
// an error naming the file.
func Check(ctx context.Context, path string, o Options) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	c := &checker{ctx: ctx, f: f, path: path, size: st.Size(), opts: o}
	if o.Values != nil && runtime.GOMAXPROCS(0) > 1 {
		c.pipe = startValues(f, path, o.Values)
	}
	err = c.contained()
	if c.pipe != nil {
		// The walk handed Values every entry before the point it stopped
		// at, so an error from Values comes first in walk order.
		if verr := c.pipe.finish(); verr != nil {
			err = verr
		}
	}
	if err != nil {
		return nil, err
	}
	return &c.rep, nil
}

// contained runs the walk, turning a panic into an error.
func (c *checker) contained() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = bugErr(c.path, p)
		}
	}()
	return c.run()
}

func bugErr(path string, p any) error {
	return fmt.Errorf("%s: the structure check failed unexpectedly (a bug in boltcheck, not necessarily damage): %v", path, p)
}

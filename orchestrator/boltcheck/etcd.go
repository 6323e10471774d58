package boltcheck

import (
	"encoding/binary"
	"fmt"
)

// etcd's revision keys (go.etcd.io/etcd/server/v3/storage/mvcc revision.go):
// 8-byte big-endian main revision, '_', 8-byte big-endian sub revision, and
// a 't' after them when the revision is a deletion (a tombstone).
const (
	revBytesLen       = 8 + 1 + 8
	markedRevBytesLen = revBytesLen + 1
	markTombstone     = 't'
)

// revisionOrder is the last revision seen in the key bucket.
type revisionOrder struct {
	seen      bool
	main, sub int64
}

// revision checks key i of a page of the "key" bucket, as etcd's
// BytesToBucketKey would read it, and that revisions strictly increase
// (a revision and its tombstone form sort next to each other).
func (c *checker) revision(p *pageView, i int, key []byte) error {
	bad := func(what string) error {
		return c.pageErr(Etcd, p.id, fmt.Sprintf(`bucket "key": key[%d] %x %s`, i, key, what))
	}
	switch {
	case len(key) != revBytesLen && len(key) != markedRevBytesLen:
		return bad(fmt.Sprintf("is %d bytes; an etcd revision is %d, or %d with its tombstone mark", len(key), revBytesLen, markedRevBytesLen))
	case key[8] != '_':
		return bad(fmt.Sprintf("has %q where an etcd revision has '_'", key[8]))
	case len(key) == markedRevBytesLen && key[revBytesLen] != markTombstone:
		return bad(fmt.Sprintf("ends with %q where an etcd revision has its tombstone mark 't'", key[revBytesLen]))
	}
	main := int64(binary.BigEndian.Uint64(key[0:8]))
	sub := int64(binary.BigEndian.Uint64(key[9:17]))
	if main < 0 || sub < 0 {
		return bad(fmt.Sprintf("is a negative revision (%d, %d)", main, sub))
	}
	r := &c.rev
	if r.seen && (main < r.main || main == r.main && sub <= r.sub) {
		return bad(fmt.Sprintf("is revision %d.%d, not after the one before it (%d.%d): a revision is stored twice", main, sub, r.main, r.sub))
	}
	if !r.seen {
		c.rep.MinRevision = main
	}
	r.seen, r.main, r.sub = true, main, sub
	c.rep.MaxRevision = main
	c.rep.Keys++
	if len(key) == markedRevBytesLen {
		c.rep.Tombstones++
	}
	return nil
}

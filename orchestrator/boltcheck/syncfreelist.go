package boltcheck

import (
	"errors"
	"fmt"
	"os"
)

// SyncFreelist writes into the checked file at path the free list bbolt
// would otherwise rebuild on every read-write open of a file written
// without one (etcd writes its files so): bbolt's rebuild walks every page
// of the file through its mmap, keeping a map of them, so its time and
// resident memory follow the file's size. r is Check's report on that very
// file, made with Options.ListUnreachable.
//
// The list goes in a free list page (and its overflow pages) at the high
// water mark, laid out as bbolt writes one, and the meta page bbolt uses
// is rewritten to point at it, with the high water mark past it and its
// checksum; its transaction id is kept, so bbolt still picks it. bbolt
// frees that page again at its next commit. The file must not be open in
// bbolt meanwhile, and is not fsynced.
func SyncFreelist(path string, r *Report) error {
	m := r.meta
	if m.freelist != noFreelist {
		return nil // bbolt reads the list the file has
	}
	if r.Unreachable == nil && r.FreePages > 0 {
		return errors.New("SyncFreelist needs a Check report made with ListUnreachable")
	}
	ps := int64(r.PageSize)
	ids := r.Unreachable
	// bbolt's layout: the count in the header, or 0xFFFF there and the
	// count in the first slot.
	slots := len(ids)
	if slots >= freelistCountOverflow {
		slots++
	}
	size := int64(pageHeaderSize + 8*slots)
	pages := (size + ps - 1) / ps
	at := m.pgid
	page := make([]byte, pages*ps)
	order.PutUint64(page[0:], at)
	order.PutUint16(page[8:], freelistPage)
	order.PutUint32(page[12:], uint32(pages-1))
	body := page[pageHeaderSize:]
	if len(ids) < freelistCountOverflow {
		order.PutUint16(page[10:], uint16(len(ids)))
	} else {
		order.PutUint16(page[10:], freelistCountOverflow)
		order.PutUint64(body, uint64(len(ids)))
		body = body[8:]
	}
	for i, id := range ids {
		order.PutUint64(body[8*i:], id)
	}

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(page, int64(at)*ps); err != nil {
		return fmt.Errorf("write the free list into %s: %w", path, err)
	}
	metaAt := int64(r.Meta) * ps
	mp := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(mp, metaAt); err != nil {
		return fmt.Errorf("read the meta page of %s: %w", path, err)
	}
	if got, problem := validateMeta(mp); problem != "" || got != m {
		return fmt.Errorf("%s changed since it was checked: its meta page %d is not the one checked", path, r.Meta)
	}
	b := mp[pageHeaderSize:]
	order.PutUint64(b[32:], at)
	order.PutUint64(b[40:], at+uint64(pages))
	order.PutUint64(b[metaSumOffset:], metaSum(mp))
	if _, err := f.WriteAt(mp, metaAt); err != nil {
		return fmt.Errorf("point the meta page of %s at its free list: %w", path, err)
	}
	return f.Close()
}

package boltcheck

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// valuePipe runs Options.Values on a goroutine of its own, so that its work
// (a checksum, a decode per value) overlaps the walk's reads and checks on
// a second core. The walk copies each entry into a batch and hands full
// batches over; the batches go round, so memory stays at pipeBatches of
// them whatever the file's size. A value on overflow pages not already in
// the walk's buffers is read by whichever goroutine is ahead (see
// walkReads): the Values goroutine reads it itself when it keeps up, so
// the read's cost and the bytes land on the core that uses them.
type valuePipe struct {
	fn   func(bucket, key, value []byte) error
	f    *os.File
	path string
	// buf holds a value the Values goroutine read from the file (as large
	// as the largest one, dropped after one larger than batchBytes).
	buf []byte
	// cur is the batch the walk is filling.
	cur *batch
	// full carries batches to the Values goroutine, empty brings them back.
	full, empty chan *batch
	done        chan struct{}
	// err is the first error Values returned (or its panic); failed says
	// so to the walk, which then stops at its next hand-over.
	err    error
	failed atomic.Bool
}

const (
	// pipeBatches batches of batchBytes (a larger value makes its batch
	// larger until it comes back) and at most batchEntries entries: 4 MiB
	// in all, a few milliseconds of Values' work each.
	pipeBatches  = 4
	batchBytes   = 1 << 20
	batchEntries = 4096
)

// batch is entries copied out of the walk's buffers.
type batch struct {
	data []byte
	ents []entry
}

// entry is one Values call: leaf element i of page (i < 0: the bucket's
// name) of top-level bucket b, its key and value in the batch's data, or
// its value's value.n bytes at offset at of the file when at >= 0.
type entry struct {
	b          *bucket
	page       uint64
	i          int
	key, value span
	at         int64
}

// span is a slice of a batch's data; n < 0 is a nil slice (a bucket's
// name has no key, a nested bucket no value), which Values tells from an
// empty one.
type span struct{ off, n int }

// errValuesFailed stops the walk once Values has failed: Check reports
// Values' error, which comes first in walk order.
var errValuesFailed = errors.New("values failed")

func startValues(f *os.File, path string, fn func(bucket, key, value []byte) error) *valuePipe {
	vp := &valuePipe{fn: fn, f: f, path: path, cur: &batch{},
		full: make(chan *batch, pipeBatches), empty: make(chan *batch, pipeBatches), done: make(chan struct{})}
	for range pipeBatches - 1 {
		vp.empty <- &batch{}
	}
	go vp.run()
	return vp
}

// add copies an entry into the current batch, handing it over first when
// the entry does not fit, and returns where its value of n bytes goes
// (n < 0: a nil value), for the walk to fill.
func (vp *valuePipe) add(b *bucket, page uint64, i int, key []byte, n int) ([]byte, error) {
	e, err := vp.entry(b, page, i, key, max(n, 0))
	if err != nil {
		return nil, err
	}
	bt := vp.cur
	if n >= 0 {
		e.value = span{off: len(bt.data), n: n}
		bt.data = bt.data[:e.value.off+n]
	}
	bt.ents = append(bt.ents, e)
	return bt.bytes(e.value), nil
}

// walkReads says whether the walk reads a value on overflow pages itself
// rather than leave it to Values: when full batches wait for Values (it is
// behind). Tests set it to take either way.
var walkReads = func(vp *valuePipe) bool { return len(vp.full) > 0 }

// addAt adds an entry whose value is n bytes at offset at of the file.
func (vp *valuePipe) addAt(b *bucket, page uint64, i int, key []byte, n int, at int64) error {
	e, err := vp.entry(b, page, i, key, 0)
	if err != nil {
		return err
	}
	e.value, e.at = span{n: n}, at
	vp.cur.ents = append(vp.cur.ents, e)
	return nil
}

// entry makes room for an entry with its key and value bytes more, and
// copies its key in.
func (vp *valuePipe) entry(b *bucket, page uint64, i int, key []byte, value int) (entry, error) {
	need := len(key) + value
	bt := vp.cur
	if len(bt.ents) > 0 && (len(bt.data)+need > cap(bt.data) || len(bt.ents) == batchEntries) {
		if err := vp.send(); err != nil {
			return entry{}, err
		}
		bt = vp.cur
	}
	if len(bt.data)+need > cap(bt.data) {
		// An empty batch: made on first use, or larger for a large value.
		bt.data = make([]byte, 0, max(batchBytes, need))
	}
	e := entry{b: b, page: page, i: i, key: span{n: -1}, value: span{n: -1}, at: -1}
	if key != nil {
		e.key = span{off: len(bt.data), n: len(key)}
		bt.data = append(bt.data, key...)
	}
	return e, nil
}

func (bt *batch) bytes(s span) []byte {
	if s.n < 0 {
		return nil
	}
	end := s.off + s.n
	return bt.data[s.off:end:end]
}

// send hands the current batch over and takes an empty one.
func (vp *valuePipe) send() error {
	if vp.failed.Load() {
		return errValuesFailed
	}
	vp.full <- vp.cur
	vp.cur = <-vp.empty
	return nil
}

// finish hands over what is left and waits for Values to be done with it.
// It returns Values' error, if it returned one.
func (vp *valuePipe) finish() error {
	if vp.cur != nil && len(vp.cur.ents) > 0 {
		vp.full <- vp.cur
	}
	vp.cur = nil
	close(vp.full)
	<-vp.done
	return vp.err
}

// run is the Values goroutine. After an error it only sends batches back,
// so the walk never waits for one.
func (vp *valuePipe) run() {
	defer close(vp.done)
	for bt := range vp.full {
		if vp.err == nil {
			if vp.err = vp.call(bt); vp.err != nil {
				vp.failed.Store(true)
			}
		}
		bt.ents = bt.ents[:0]
		bt.data = bt.data[:0]
		if cap(bt.data) > batchBytes {
			bt.data = nil // a large value's batch: back to the usual size
		}
		vp.empty <- bt
	}
}

// call calls Values on a batch's entries in order. A panic in Values is
// contained as Check contains its own.
func (vp *valuePipe) call(bt *batch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = bugErr(vp.path, p)
		}
	}()
	for _, e := range bt.ents {
		key, value := bt.bytes(e.key), []byte(nil)
		if e.at < 0 {
			value = bt.bytes(e.value)
		} else if value, err = vp.read(e); err != nil {
			return err
		}
		if err := vp.fn(e.b.name, key, value); err != nil {
			return valuesErr(vp.path, e, key, err)
		}
	}
	return nil
}

// read reads an entry's value from the file, as the walk would have.
func (vp *valuePipe) read(e entry) ([]byte, error) {
	if cap(vp.buf) > batchBytes {
		vp.buf = nil // the last value was a large one
	}
	b := grow(&vp.buf, e.value.n)
	if _, err := vp.f.ReadAt(b, e.at); err != nil {
		return nil, fmt.Errorf("%s: read page %d: %w", vp.path, e.page, err)
	}
	return b[:len(b):len(b)], nil
}

// valuesErr is the Etcd error for an entry Values refused.
func valuesErr(path string, e entry, key []byte, err error) error {
	msg := fmt.Sprintf("%s: key[%d] %x: %v", e.b, e.i, key, err)
	if e.i < 0 {
		msg = fmt.Sprintf("%s: %v", e.b, err)
	}
	return &Error{Path: path, Page: int64(e.page), Kind: Etcd, Msg: msg}
}

package boltcheck

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// keysOf returns, in order, the key bucket's keys as slices of b (the key
// bucket's tree is walked from its root page).
func (l layout) keysOf(b []byte) [][]byte {
	var keys [][]byte
	var walk func(id uint64)
	walk = func(id uint64) {
		p := l.page(b, id)
		h := readHeader(p)
		for i := 0; i < int(h.count); i++ {
			e := elemOf(p, i)
			if h.flags == branchPage {
				walk(order.Uint64(e[8:]))
				continue
			}
			at := pageHeaderSize + i*elementSize + int(order.Uint32(e[4:]))
			keys = append(keys, p[at:at+int(order.Uint32(e[8:]))])
		}
	}
	walk(l.keyRoot)
	return keys
}

// inlineKey returns key i of the inline bucket name, in the root bucket's
// leaf page.
func (l layout) inlineKey(t *testing.T, b []byte, name string, i int) []byte {
	t.Helper()
	p := l.page(b, l.root)
	h := readHeader(p)
	if h.flags != leafPage {
		t.Fatal("the root bucket's page is not a leaf")
	}
	for j := 0; j < int(h.count); j++ {
		e := elemOf(p, j)
		at := pageHeaderSize + j*elementSize + int(order.Uint32(e[4:]))
		ksize, vsize := int(order.Uint32(e[8:])), int(order.Uint32(e[12:]))
		if string(p[at:at+ksize]) != name {
			continue
		}
		value := p[at+ksize : at+ksize+vsize]
		if order.Uint64(value) != 0 {
			t.Fatalf("bucket %q is not inline", name)
		}
		in := value[bucketSize:]
		ie := elemOf(in, i)
		kat := pageHeaderSize + i*elementSize + int(order.Uint32(ie[4:]))
		return in[kat : kat+int(order.Uint32(ie[8:]))]
	}
	t.Fatalf("no bucket %q in the root bucket", name)
	return nil
}

// stricter is damage bbolt's Tx.Check accepts and Check rejects, by a
// rule of bbolt's format Tx.Check does not verify (Format) or of etcd's
// schema (Etcd).
type stricter struct {
	name string
	file func(t *testing.T) string
	kind Kind
	want string
	// skipEtcd: with SkipEtcd, Check accepts the file.
	skipEtcd bool
}

// damaged writes a copy of healthy with f applied, and returns its path.
func damaged(t *testing.T, healthy string, f func(t *testing.T, b []byte, l layout) []byte) string {
	t.Helper()
	b, err := os.ReadFile(healthy)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "damaged.db")
	if err := os.WriteFile(p, f(t, b, layoutOf(t, healthy)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func shaped(t *testing.T, s shape) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "shaped.db")
	writeShape(t, p, s)
	return p
}

var withTombstones = shape{pageSize: 4096, revisions: 2000, tombstoneEvery: 10, valueSize: 100, deleteFrom: 1500}

// TestChecksMoreThanTxCheck lists what Check rejects and bbolt accepts.
func TestChecksMoreThanTxCheck(t *testing.T) {
	cases := []stricter{
		{"a revision key without its '_'", func(t *testing.T) string {
			return damaged(t, shaped(t, withTombstones), func(_ *testing.T, b []byte, l layout) []byte {
				l.keysOf(b)[100][8] = '-'
				return b
			})
		}, Etcd, "where an etcd revision has '_'", true},
		{"a tombstone mark that is not 't'", func(t *testing.T) string {
			return damaged(t, shaped(t, withTombstones), func(t *testing.T, b []byte, l layout) []byte {
				for _, k := range l.keysOf(b) {
					if len(k) == 18 {
						k[17] = 'x'
						return b
					}
				}
				t.Fatal("no tombstone in the file")
				return nil
			})
		}, Etcd, "where an etcd revision has its tombstone mark 't'", true},
		{"a negative revision", func(t *testing.T) string {
			return damaged(t, shaped(t, withTombstones), func(_ *testing.T, b []byte, l layout) []byte {
				keys := l.keysOf(b)
				keys[len(keys)-1][0] = 0x80 // the last key stays the greatest
				return b
			})
		}, Etcd, "is a negative revision", true},
		{"no key bucket", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "plain.db")
			db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("plain"))
				if err != nil {
					return err
				}
				return b.Put([]byte("k"), []byte("v"))
			}); err != nil {
				t.Fatal(err)
			}
			return p
		}, Etcd, `it has no "key" bucket`, true},
		{"an inline bucket's keys out of order", func(t *testing.T) string {
			return damaged(t, shaped(t, withTombstones), func(t *testing.T, b []byte, l layout) []byte {
				// "meta" is inline: consistent_index, then term.
				key := l.inlineKey(t, b, "meta", 0)
				key[0] = 'z'
				return b
			})
		}, Format, `bucket "meta": leaf key[1] 7465726d sorts before the key before it`, false},
		{"a free list id past the high water mark", func(t *testing.T) string {
			return damaged(t, shaped(t, withTombstones), func(t *testing.T, b []byte, l layout) []byte {
				return addFreeID(t, b, l, l.pages+10)
			})
		}, Format, "outside the data pages", false},
		{"a free list naming a meta page", func(t *testing.T) string {
			return damaged(t, shaped(t, withTombstones), func(t *testing.T, b []byte, l layout) []byte {
				return addFreeID(t, b, l, 1)
			})
		}, Format, "the free list holds page 1, outside the data pages", false},
		{"free pages cut off the end of the file", freeTailCut, Format, "the file is truncated", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.file(t)
			if ok, detail := txCheck(t, p); !ok {
				t.Fatalf("bbolt rejects the file: %s", detail)
			}
			_, err := Check(context.Background(), p, Options{})
			if k, _ := KindOf(err); err == nil || k != c.kind || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check says %v, want a %s error saying %q", err, c.kind, c.want)
			}
			if c.skipEtcd {
				if _, err := Check(context.Background(), p, Options{SkipEtcd: true}); err != nil {
					t.Fatalf("with SkipEtcd: %v", err)
				}
			}
		})
	}
}

// addFreeID appends id to the free list page, where it has room.
func addFreeID(t *testing.T, b []byte, l layout, id uint64) []byte {
	t.Helper()
	if l.freelist == 0 {
		t.Fatal("no free list page")
	}
	fl := l.page(b, l.freelist)
	n := int(order.Uint16(fl[10:]))
	if n == 0 || pageHeaderSize+(n+1)*8 > l.pageSize {
		t.Fatalf("the free list holds %d ids: no room for one more", n)
	}
	order.PutUint64(fl[pageHeaderSize+n*8:], id)
	order.PutUint16(fl[10:], uint16(n+1))
	return b
}

// freeTailCut writes a file whose last pages are free (a big bucket
// written, then deleted) and cuts them off: bbolt never reads them.
func freeTailCut(t *testing.T) string {
	p := shaped(t, shape{pageSize: 4096, revisions: 200, valueSize: 100})
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("scratch"))
		if err != nil {
			return err
		}
		for i := 0; i < 500; i++ {
			if err := b.Put(revKey(int64(i), false), bytes.Repeat([]byte("s"), 500)); err != nil {
				return err
			}
		}
		return nil
	}))
	must(db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("scratch")) }))
	for i := 0; i < 2; i++ {
		must(db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("cluster")).Put([]byte("n"), []byte{byte(i)}) }))
	}
	var cut int
	must(db.View(func(tx *bolt.Tx) error {
		hwm := int(tx.Size()) / db.Info().PageSize
		cut = hwm
		for cut > 2 {
			pi, err := tx.Page(cut - 1)
			if err != nil {
				return err
			}
			if pi == nil || pi.Type != "free" {
				break
			}
			cut--
		}
		if cut > hwm-10 {
			t.Fatalf("only %d free pages at the end of the file", hwm-cut)
		}
		return nil
	}))
	size := cut * db.Info().PageSize
	must(db.Close())
	must(os.Truncate(p, int64(size)))
	return p
}

// TestNeverPanics overwrites parts of the seed files with random bytes:
// whatever the damage, Check returns (an error or a report), never panics.
func TestNeverPanics(t *testing.T) {
	r := rand.New(rand.NewSource(17))
	for name := range seeds {
		seed := readSeed(t, filepath.Join("testdata", "fuzz", "FuzzCheck", name))
		p := filepath.Join(t.TempDir(), "garbage.db")
		for i := 0; i < 300; i++ {
			b := bytes.Clone(seed)
			for n := 1 + r.Intn(8); n > 0; n-- {
				at, size := r.Intn(len(b)), 1+r.Intn(64)
				r.Read(b[at:min(len(b), at+size)])
			}
			if r.Intn(10) == 0 {
				b = b[:r.Intn(len(b))]
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Check(context.Background(), p, Options{})
			if _, isCheck := KindOf(err); err != nil && !isCheck {
				t.Fatalf("%s, damage %d: not a check error: %v", name, i, err)
			}
		}
	}
}

// TestContextEnds stops the check when its context ends.
func TestContextEnds(t *testing.T) {
	p := shaped(t, shape{pageSize: 4096, revisions: 20000, valueSize: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := Check(ctx, p, Options{Progress: func(Progress) {
		calls++
		cancel()
	}})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err %v after %d progress calls: want context.Canceled after the first", err, calls)
	}
	if _, isCheck := KindOf(err); isCheck {
		t.Fatalf("a cancelled check must not say the file is damaged: %v", err)
	}
}

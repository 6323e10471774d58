package boltcheck

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// layout locates the pages a fault damages in a healthy file.
type layout struct {
	pageSize int
	// keyRoot is the key bucket's root page: a branch page in these files.
	keyRoot uint64
	// root is the root bucket's page.
	root uint64
	// pages is the high water mark.
	pages uint64
	// freelist is the free list page, 0 when the file has none (etcd 3.6+
	// writes none: its pages are rebuilt from the unreachable ones).
	freelist uint64
}

func layoutOf(t *testing.T, path string) layout {
	t.Helper()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := layout{pageSize: db.Info().PageSize}
	if err := db.View(func(tx *bolt.Tx) error {
		l.keyRoot = uint64(tx.Bucket([]byte("key")).Root())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m0, m1 := readMeta(b), readMeta(b[l.pageSize:])
	if m1.txid > m0.txid {
		m0 = m1
	}
	l.pages, l.root = m0.pgid, m0.root
	if m0.freelist != noFreelist {
		l.freelist = m0.freelist
	}
	return l
}

func (l layout) page(b []byte, id uint64) []byte {
	return b[int(id)*l.pageSize : int(id+1)*l.pageSize]
}

// elem returns element i of a page.
func elemOf(page []byte, i int) []byte {
	return page[pageHeaderSize+i*elementSize : pageHeaderSize+(i+1)*elementSize]
}

// firstLeaf returns the key bucket's first leaf page.
func (l layout) firstLeaf(t *testing.T, b []byte) uint64 {
	id := l.keyRoot
	for readHeader(l.page(b, id)).flags == branchPage {
		id = order.Uint64(elemOf(l.page(b, id), 0)[8:])
	}
	if readHeader(l.page(b, id)).flags != leafPage {
		t.Fatalf("page %d of the key bucket is neither a branch nor a leaf", id)
	}
	return id
}

// fault is one damage to a healthy file. want is what Check must say
// (bbolt must reject the file too); "" means only that the two agree;
// wantOK means both must accept it.
type fault struct {
	name   string
	damage func(t *testing.T, b []byte, l layout) []byte
	want   string
	wantOK bool
}

func flipAt(frac float64) func(*testing.T, []byte, layout) []byte {
	return func(_ *testing.T, b []byte, _ layout) []byte {
		b[int(float64(len(b))*frac)] ^= 0x5a
		return b
	}
}

// truncateTo cuts the file at a fraction of its pages (a backend file
// runs on past them: bbolt grows it in steps).
func truncateTo(frac float64) func(*testing.T, []byte, layout) []byte {
	return func(_ *testing.T, b []byte, l layout) []byte {
		return b[:int(float64(min(len(b), int(l.pages)*l.pageSize))*frac)]
	}
}

func zeroPages(ids ...uint64) func(*testing.T, []byte, layout) []byte {
	return func(_ *testing.T, b []byte, l layout) []byte {
		for _, id := range ids {
			clear(l.page(b, id))
		}
		return b
	}
}

// The restore's fault table damages snapshots the same way (flipped bytes,
// truncation, a file that is not bbolt, an empty one); these add damage
// aimed at bbolt's structure.
var commonFaults = []fault{
	{"byte flipped in the middle", flipAt(0.5), "", false},
	{"byte flipped at a quarter", flipAt(0.25), "", false},
	{"byte flipped at three quarters", flipAt(0.75), "", false},
	{"truncated at 50%", truncateTo(0.5), "the file is truncated", false},
	{"truncated at 10%", truncateTo(0.1), "the file is truncated", false},
	{"truncated by one byte", func(_ *testing.T, b []byte, _ layout) []byte { return b[:len(b)-1] }, "", false},
	{"empty", func(*testing.T, []byte, layout) []byte { return nil }, "the file is empty", false},
	{"not a bbolt file", func(*testing.T, []byte, layout) []byte {
		return bytes.Repeat([]byte("not bbolt"), 2048)[:16384]
	}, "no valid meta page", false},
	{"meta page 0 zeroed", zeroPages(0), "the meta page's header is damaged", false},
	{"both meta pages zeroed", zeroPages(0, 1), "no valid meta page", false},
	{"meta page 0's checksum broken", func(_ *testing.T, b []byte, _ layout) []byte {
		b[pageHeaderSize+48] ^= 0xff // its txid
		return b
	}, "", true},
	{"both meta pages' checksums broken", func(_ *testing.T, b []byte, l layout) []byte {
		b[pageHeaderSize+48] ^= 0xff
		b[l.pageSize+pageHeaderSize+48] ^= 0xff
		return b
	}, "both its meta pages are damaged (meta page 0: checksum mismatch; meta page 1: checksum mismatch)", false},
	{"a page referenced twice", func(_ *testing.T, b []byte, l layout) []byte {
		root := l.page(b, l.keyRoot)
		copy(elemOf(root, 1)[8:], elemOf(root, 0)[8:16])
		return b
	}, "reached twice (multiple references)", false},
	{"a branch points past the file", func(_ *testing.T, b []byte, l layout) []byte {
		order.PutUint64(elemOf(l.page(b, l.keyRoot), 1)[8:], 1<<40)
		return b
	}, "outside the data pages", false},
	{"keys out of order", func(t *testing.T, b []byte, l layout) []byte {
		leaf := l.page(b, l.firstLeaf(t, b))
		key := func(i int) []byte {
			e := elemOf(leaf, i)
			at := pageHeaderSize + i*elementSize + int(order.Uint32(e[4:]))
			return leaf[at : at+int(order.Uint32(e[8:]))]
		}
		k0, k1 := key(0), key(1)
		tmp := bytes.Clone(k0)
		copy(k0, k1)
		copy(k1, tmp)
		return b
	}, "sorts before the key before it", false},
	{"a leaf page's type changed", func(t *testing.T, b []byte, l layout) []byte {
		order.PutUint16(l.page(b, l.firstLeaf(t, b))[8:], freelistPage)
		return b
	}, "a freelist page (flags 0x10) where a branch or leaf page belongs", false},
	{"a page's id changed", func(t *testing.T, b []byte, l layout) []byte {
		order.PutUint64(l.page(b, l.firstLeaf(t, b)), 7)
		return b
	}, "its header says it is page 7", false},
}

// freelistFaults need a file with a free list page (bbolt's default; etcd
// 3.6 and later write none).
var freelistFaults = []fault{
	{"the free list holds a page twice", func(_ *testing.T, b []byte, l layout) []byte {
		fl := l.page(b, l.freelist)
		copy(fl[pageHeaderSize+8:], fl[pageHeaderSize:pageHeaderSize+8])
		return b
	}, "freed twice", false},
	{"the free list lost a page", func(_ *testing.T, b []byte, l layout) []byte {
		fl := l.page(b, l.freelist)
		order.PutUint16(fl[10:], order.Uint16(fl[10:])-1)
		return b
	}, "unreachable unfreed", false},
	{"the free list holds a page in use", func(t *testing.T, b []byte, l layout) []byte {
		order.PutUint64(l.page(b, l.freelist)[pageHeaderSize:], l.firstLeaf(t, b))
		return b
	}, "", false},
	{"the free list page's type changed", func(_ *testing.T, b []byte, l layout) []byte {
		order.PutUint16(l.page(b, l.freelist)[8:], leafPage)
		return b
	}, "the meta page names it as the free list but it is a leaf page", false},
}

func runFaults(t *testing.T, healthy string, faults []fault) {
	l := layoutOf(t, healthy)
	orig, err := os.ReadFile(healthy)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "damaged.db")
			if err := os.WriteFile(p, f.damage(t, bytes.Clone(orig), l), 0o600); err != nil {
				t.Fatal(err)
			}
			err := agree(t, p)
			refOK, detail := txCheck(t, p)
			t.Logf("Check: %v; bbolt: %s", err, detail)
			switch {
			case f.wantOK && (err != nil || !refOK):
				t.Fatalf("want both to accept it: Check says %v, bbolt %s", err, detail)
			case f.want != "" && (err == nil || !strings.Contains(err.Error(), f.want)):
				t.Fatalf("Check says %v, want it to say %q", err, f.want)
			case f.want != "" && refOK:
				t.Fatalf("bbolt accepts the damage Check reports as %q", f.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), p+": ") {
				t.Errorf("the error does not start with the file's name: %v", err)
			}
		})
	}
}

// TestFaultsAgreeWithTxCheck damages a real etcd's snapshot and backend,
// and a bbolt file with a free list page, and checks that Check and bbolt's
// Tx.Check give the same verdict, with the message the table says.
func TestFaultsAgreeWithTxCheck(t *testing.T) {
	snap, backend, _ := realEtcdFiles(t)
	t.Run("snapshot", func(t *testing.T) { runFaults(t, snap, commonFaults) })
	t.Run("backend", func(t *testing.T) { runFaults(t, backend, commonFaults) })
	t.Run("with a free list", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "freelist.db")
		writeShape(t, p, shape{pageSize: 4096, revisions: 3000, tombstoneEvery: 10, valueSize: 200, deleteFrom: 2000, bigValues: 3})
		if l := layoutOf(t, p); l.freelist == 0 {
			t.Fatal("the file has no free list page")
		}
		runFaults(t, p, append(append([]fault{}, commonFaults...), freelistFaults...))
	})
}

// TestMetaFallbackWarns: with meta page 0's checksum broken, bbolt uses
// meta page 1; so does Check, and it says so.
func TestMetaFallbackWarns(t *testing.T) {
	snap, _, _ := realEtcdFiles(t)
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	b[pageHeaderSize+48] ^= 0xff
	p := filepath.Join(t.TempDir(), "meta0.db")
	os.WriteFile(p, b, 0o600)
	rep, err := Check(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Meta != 1 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "meta page 0 is damaged (checksum mismatch)") {
		t.Fatalf("meta %d, warnings %q: want meta page 1 used and a warning about meta page 0", rep.Meta, rep.Warnings)
	}
}

// TestLargeFreeList: a free list of more than 65,534 ids keeps its count in
// its first slot; both checkers read it, and a page freed twice in it.
func TestLargeFreeList(t *testing.T) {
	p := shaped(t, shape{pageSize: 1024, revisions: 200_000, valueSize: 200, deleteFrom: 100})
	l := layoutOf(t, p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fl := l.page(b, l.freelist)
	if order.Uint16(fl[10:]) != freelistCountOverflow {
		t.Fatalf("the free list's count is %d: want the overflow mark", order.Uint16(fl[10:]))
	}
	rep, err := Check(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, detail := txCheck(t, p); !ok {
		t.Fatalf("bbolt rejects the file: %s", detail)
	}
	if rep.FreePages != order.Uint64(fl[pageHeaderSize:]) || rep.FreePages < 0xFFFF || rep.FreelistPages < 2 {
		t.Fatalf("report %+v: want the free list's %d ids, on several pages", rep, order.Uint64(fl[pageHeaderSize:]))
	}
	copy(fl[pageHeaderSize+16:], fl[pageHeaderSize+8:pageHeaderSize+16]) // ids 0 and 1 the same
	d := filepath.Join(t.TempDir(), "twice.db")
	if err := os.WriteFile(d, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := agree(t, d); err == nil || !strings.Contains(err.Error(), "freed twice") {
		t.Fatalf("Check says %v, want a page freed twice", err)
	}
}

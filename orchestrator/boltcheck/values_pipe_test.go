package boltcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// largeValuesFile is an etcd-shaped file that spans many of the batches
// Values is fed in (about 30 MiB), with values on overflow pages, values
// larger than a batch and empty ones, written once per test binary.
var largeValues struct {
	once sync.Once
	path string
}

func largeValuesFile(t *testing.T) string {
	t.Helper()
	largeValues.once.Do(func() {
		dir, err := os.MkdirTemp("", "boltcheck-values-")
		if err != nil {
			t.Fatal(err)
		}
		sharedDirs = append(sharedDirs, dir)
		p := filepath.Join(dir, "large.db")
		writeShape(t, p, shape{pageSize: 4096, revisions: 25000, tombstoneEvery: 7, valueSize: 1000, bigValues: 50, nested: true})
		db, err := bolt.Open(p, 0o600, &bolt.Options{NoSync: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error {
			lease := tx.Bucket([]byte("lease"))
			for i, n := range []int{0, 3 << 20, 1, batchBytes, batchBytes + 1, 5 << 20, 0} {
				if err := lease.Put([]byte(fmt.Sprintf("lease-%02d", i)), bytes.Repeat([]byte{byte('a' + i)}, n)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		largeValues.path = p
	})
	if largeValues.path == "" {
		t.Fatal("no large file")
	}
	return largeValues.path
}

// call is a digest of one Values call: which bucket, the key and value
// (nil told from empty), their size and checksum.
func call(bucket, key, value []byte) string {
	return fmt.Sprintf("%s|%t|%x|%t|%d|%08x", bucket, key == nil, key, value == nil, len(value), crc32.ChecksumIEEE(value))
}

// TestValuesManyBatchesInBboltOrder: across many batches, with values
// larger than a batch, Options.Values sees exactly what bbolt's cursor
// gives, in its order, nil slices still nil.
func TestValuesManyBatchesInBboltOrder(t *testing.T) {
	bothReads(t, testValuesManyBatchesInBboltOrder)
}

// bothReads runs a test with values on overflow pages read by the walk,
// then by the Values goroutine, then with one core: Values called by the
// walk, no second goroutine.
func bothReads(t *testing.T, test func(t *testing.T)) {
	defer func(auto func(*valuePipe) bool) { walkReads = auto }(walkReads)
	for _, by := range []bool{true, false} {
		walkReads = func(*valuePipe) bool { return by }
		t.Run(fmt.Sprintf("walk reads %t", by), test)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	t.Run("one core", test)
}

func testValuesManyBatchesInBboltOrder(t *testing.T) {
	p := largeValuesFile(t)
	var got []string
	if _, err := Check(context.Background(), p, Options{Values: func(bucket, key, value []byte) error {
		got = append(got, call(bucket, key, value))
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(p, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var want []string
	var bytesSeen int
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			want = append(want, call(name, nil, nil))
			return b.ForEach(func(k, v []byte) error {
				bytesSeen += len(k) + len(v)
				want = append(want, call(name, k, v))
				return nil
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	if bytesSeen < 8*pipeBatches*batchBytes {
		t.Fatalf("the file holds %d bytes of entries, not many batches: the test does not test them", bytesSeen)
	}
	if i := firstDiff(got, want); i < len(got) || len(got) != len(want) {
		t.Fatalf("Values saw %d calls, bbolt gives %d; first difference at %d: %q, want %q", len(got), len(want), i, at(got, i), at(want, i))
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}

// keyLeaves lists the key bucket's leaf pages in key order.
func keyLeaves(b []byte, l layout) []uint64 {
	var leaves []uint64
	var walk func(id uint64)
	walk = func(id uint64) {
		page := l.page(b, id)
		h := readHeader(page)
		if h.flags == leafPage {
			leaves = append(leaves, id)
			return
		}
		for i := 0; i < int(h.count); i++ {
			walk(order.Uint64(elemOf(page, i)[8:]))
		}
	}
	walk(l.keyRoot)
	return leaves
}

// leafKey is leaf element i's key.
func leafKey(page []byte, i int) []byte {
	e := elemOf(page, i)
	at := pageHeaderSize + i*elementSize + int(order.Uint32(e[4:]))
	return append([]byte(nil), page[at:at+int(order.Uint32(e[8:]))]...)
}

// TestValuesErrorBeforeLaterDamage: Values refuses an entry in the middle
// of a large file whose walk finds damage further on, while Values still
// works through the batches before it. The check reports what checking
// entry by entry would: the refusal, on its page, and Values is called for
// nothing after it.
func TestValuesErrorBeforeLaterDamage(t *testing.T) {
	bothReads(t, testValuesErrorBeforeLaterDamage)
}

func testValuesErrorBeforeLaterDamage(t *testing.T) {
	healthy := largeValuesFile(t)
	b, err := os.ReadFile(healthy)
	if err != nil {
		t.Fatal(err)
	}
	l := layoutOf(t, healthy)
	leaves := keyLeaves(b, l)
	if len(leaves) < 1000 {
		t.Fatalf("the key bucket has %d leaves: too small a file for this test", len(leaves))
	}
	refused := leaves[len(leaves)/2]
	i := int(readHeader(l.page(b, refused)).count) / 2
	key := leafKey(l.page(b, refused), i)
	for _, tc := range []struct {
		name    string
		damaged uint64
	}{
		{"damage on the next leaf", leaves[len(leaves)/2+1]},
		{"damage a few batches on", leaves[len(leaves)/2+4*pipeBatches*batchBytes/l.pageSize]},
		{"damage on the last leaf", leaves[len(leaves)-1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := bytes.Clone(b)
			clear(l.page(d, tc.damaged))
			p := filepath.Join(t.TempDir(), "damaged.db")
			if err := os.WriteFile(p, d, 0o600); err != nil {
				t.Fatal(err)
			}
			var e *Error
			if _, err := Check(context.Background(), p, Options{}); !errors.As(err, &e) || e.Kind != Structure || e.Page != int64(tc.damaged) {
				t.Fatalf("without Values: err = %v, want structure damage on page %d", err, tc.damaged)
			}
			want := Error{Path: p, Page: int64(refused), Kind: Etcd, Msg: fmt.Sprintf(`bucket "key": key[%d] %x: not a key-value`, i, key)}
			for range 5 {
				var after int
				refuse := func(bucket, k, v []byte) error {
					switch {
					case after > 0:
						after++
					case string(bucket) == "key" && bytes.Equal(k, key):
						after = 1
						return errors.New("not a key-value")
					}
					return nil
				}
				_, err := Check(context.Background(), p, Options{Values: refuse})
				if !errors.As(err, &e) || *e != want {
					t.Fatalf("err = %#v, want %#v", err, &want)
				}
				if after != 1 {
					t.Fatalf("Values was called %d times after the entry it refused", after-1)
				}
			}
		})
	}
}

// TestValuesPanicContained: a panic in Values, which runs on a goroutine
// of Check's, is returned as Check's own panics are, not a crash.
func TestValuesPanicContained(t *testing.T) {
	p := largeValuesFile(t)
	n := 0
	_, err := Check(context.Background(), p, Options{Values: func(bucket, key, value []byte) error {
		if n++; n == 10000 {
			panic("values broke")
		}
		return nil
	}})
	if _, damaged := KindOf(err); err == nil || damaged || !strings.Contains(err.Error(), "failed unexpectedly") || !strings.Contains(err.Error(), "values broke") || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want the panic, naming the file", err)
	}
	if n != 10000 {
		t.Fatalf("Values was called %d times after its panic", n-10000)
	}
}

// TestValuesStopWithContext: a context ending while Values works stops
// the check with the context's error.
func TestValuesStopWithContext(t *testing.T) {
	p := largeValuesFile(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	_, err := Check(ctx, p, Options{Values: func(bucket, key, value []byte) error {
		if n++; n == 1000 {
			cancel()
		}
		return nil
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the context's", err)
	}
}

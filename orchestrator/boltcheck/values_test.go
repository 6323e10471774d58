package boltcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestValuesInBboltOrder: Options.Values sees each top-level bucket's name
// and then its entries, in the order bbolt's cursor gives them, values
// on overflow pages whole.
func TestValuesInBboltOrder(t *testing.T) {
	_, backend, _ := realEtcdFiles(t)
	var got []string
	seen := func(bucket, key, value []byte) error {
		got = append(got, fmt.Sprintf("%s|%x|%d|%x", bucket, key, len(value), first(value)))
		return nil
	}
	if _, err := Check(context.Background(), backend, Options{Values: seen}); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(backend, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var want []string
	large := false
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			want = append(want, fmt.Sprintf("%s|%x|%d|%x", name, []byte(nil), 0, []byte(nil)))
			return b.ForEach(func(k, v []byte) error {
				large = large || len(v) > 64<<10
				want = append(want, fmt.Sprintf("%s|%x|%d|%x", name, k, len(v), first(v)))
				return nil
			})
		})
	}); err != nil {
		t.Fatal(err)
	}
	if !large {
		t.Fatal("the file holds no value on overflow pages: the test does not test them")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Values saw %d calls, bbolt gives %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
}

// TestValuesErrorIsEtcdDamage: an entry the caller refuses makes the file
// fail as etcd damage on that page.
func TestValuesErrorIsEtcdDamage(t *testing.T) {
	_, backend, _ := realEtcdFiles(t)
	refuse := func(bucket, key, value []byte) error {
		if bytes.Equal(bucket, []byte("key")) && key != nil {
			return errors.New("not a key-value")
		}
		return nil
	}
	_, err := Check(context.Background(), backend, Options{Values: refuse})
	if k, damaged := KindOf(err); !damaged || k != Etcd || !strings.Contains(err.Error(), `bucket "key": key[0]`) || !strings.Contains(err.Error(), "not a key-value") {
		t.Fatalf("err = %v (kind %v), want Etcd damage naming the entry", err, k)
	}
}

// first is a value's first and last bytes: enough to tell values apart
// without printing 100 KiB.
func first(v []byte) []byte {
	if len(v) <= 16 {
		return v
	}
	return append(append([]byte{}, v[:8]...), v[len(v)-8:]...)
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

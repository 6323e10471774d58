package boltcheck

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus in testdata/fuzz/FuzzCheck")

// seeds are the small files the fuzzer starts from: 1 KiB pages, so a
// whole etcd-shaped file is a few KiB.
var seeds = map[string]shape{
	"etcd-small":       {pageSize: 1024, revisions: 40, tombstoneEvery: 7, valueSize: 30, deleteFrom: 30},
	"etcd-overflow":    {pageSize: 1024, revisions: 12, valueSize: 20, bigValues: 2},
	"etcd-no-freelist": {pageSize: 1024, revisions: 30, tombstoneEvery: 5, valueSize: 30, deleteFrom: 25, noFreelistSync: true},
	"etcd-nested":      {pageSize: 1024, revisions: 20, valueSize: 20, nested: true},
	"etcd-inline-keys": {pageSize: 1024, revisions: 3, valueSize: 10},
}

// TestSeedCorpus checks that every committed seed is a healthy file both
// checkers accept (so the fuzzer starts from valid files), and rewrites the
// corpus with -update-seeds.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzCheck")
	if *updateSeeds {
		for name, s := range seeds {
			p := filepath.Join(t.TempDir(), name+".db")
			writeShape(t, p, s)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// bbolt grows files in steps; the pages past its high water
			// mark are zeros the fuzzer need not mutate.
			rep, err := Check(context.Background(), p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			b = b[:rep.Pages*uint64(rep.PageSize)]
			corpus := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(corpus), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name := range seeds {
		t.Run(name, func(t *testing.T) {
			b := readSeed(t, filepath.Join(dir, name))
			p := filepath.Join(t.TempDir(), "seed.db")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			rep, err := Check(context.Background(), p, Options{})
			if err != nil {
				t.Fatalf("a seed must be a healthy file: %v", err)
			}
			if ok, detail := txCheck(t, p); !ok {
				t.Fatalf("bbolt rejects the seed: %s", detail)
			}
			if rep.Keys == 0 || rep.PageSize != 1024 {
				t.Fatalf("seed report %+v: want revisions and 1 KiB pages", rep)
			}
		})
	}
}

// readSeed decodes a corpus file holding one []byte.
func readSeed(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestSeedCorpus -update-seeds)", err)
	}
	s := strings.TrimSpace(strings.TrimPrefix(string(b), "go test fuzz v1\n"))
	s = strings.TrimSuffix(strings.TrimPrefix(s, "[]byte("), ")")
	v, err := strconv.Unquote(s)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(v)
}

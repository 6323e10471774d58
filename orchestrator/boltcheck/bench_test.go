package boltcheck

import (
	"bufio"
	"context"
	"flag"
	"hash/crc32"
	"hash/maphash"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
)

var benchMiB = flag.Int("boltcheck.bench-mib", 256, "size of the benchmarks' etcd-shaped file, in MiB")

// benchRevisions of about 1 KiB each make an etcd-shaped file of about
// -boltcheck.bench-mib MiB (735 revisions a MiB, with bbolt's page overhead).
func benchRevisions() int { return *benchMiB * 735 }

var benchFile struct {
	once sync.Once
	path string
}

// benchDB writes the benchmarks' file once per test binary (it is removed
// when the tests end, never committed).
func benchDB(b *testing.B) string {
	benchFile.once.Do(func() {
		dir, err := os.MkdirTemp("", "boltcheck-bench-")
		if err != nil {
			b.Fatal(err)
		}
		sharedDirs = append(sharedDirs, dir)
		p := filepath.Join(dir, "etcd.db")
		start := time.Now()
		writeShape(b, p, shape{pageSize: 4096, revisions: benchRevisions(), tombstoneEvery: 20, valueSize: 1000})
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("wrote %s: %d MiB in %s", p, st.Size()>>20, time.Since(start).Round(time.Millisecond))
		benchFile.path = p
	})
	if benchFile.path == "" {
		b.Fatal("no benchmark file")
	}
	return benchFile.path
}

// peakRSS measures the process's peak resident set (VmHWM, which counts
// an mmap's file pages) over a benchmark's loop, and the CPU time it took
// (user and system: on a busy machine wall time says little).
type peakRSS struct {
	base uint64
	cpu  time.Duration
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startPeakRSS(b *testing.B) peakRSS {
	runtime.GC()
	// Writing 5 to clear_refs resets VmHWM to the current RSS.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("reset the peak RSS: %v", err)
	}
	return peakRSS{base: procStatus(b, "VmRSS:"), cpu: cpuTime(b)}
}

func (p peakRSS) report(b *testing.B) {
	b.ReportMetric(float64(cpuTime(b)-p.cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	peak := procStatus(b, "VmHWM:")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peak-min(peak, p.base))/(1<<20), "RSS-growth-MiB")
}

// procStatus returns a /proc/self/status field in bytes.
func procStatus(b *testing.B, field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkCheck checks the ~256 MiB etcd-shaped file with Check.
func BenchmarkCheck(b *testing.B) {
	p := benchDB(b)
	b.ReportAllocs()
	rss := startPeakRSS(b)
	b.ResetTimer()
	for b.Loop() {
		rep, err := Check(context.Background(), p, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Keys != uint64(benchRevisions()) {
			b.Fatalf("%d revisions, want %d", rep.Keys, benchRevisions())
		}
	}
	b.StopTimer()
	rss.report(b)
}

// BenchmarkCheckValues checks the same file with Options.Values doing
// what backup's snapshot status does with each entry: a crc32c of it, and
// for a revision the key read out of its mvccpb.KeyValue into a set. Wall
// time falls below CPU time when Values runs on a second core.
func BenchmarkCheckValues(b *testing.B) {
	p := benchDB(b)
	b.ReportAllocs()
	rss := startPeakRSS(b)
	b.ResetTimer()
	for b.Loop() {
		h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		seed, keys := maphash.MakeSeed(), map[uint64]struct{}{}
		status := func(bucket, key, value []byte) error {
			if key == nil {
				h.Write(bucket)
				return nil
			}
			h.Write(key)
			h.Write(value)
			if string(bucket) != "key" {
				return nil
			}
			for len(value) > 0 {
				num, typ, n := protowire.ConsumeTag(value)
				if n < 0 {
					return protowire.ParseError(n)
				}
				value = value[n:]
				if n = protowire.ConsumeFieldValue(num, typ, value); n < 0 {
					return protowire.ParseError(n)
				}
				if num == 1 {
					keys[maphash.Bytes(seed, value[:n])] = struct{}{}
				}
				value = value[n:]
			}
			return nil
		}
		if _, err := Check(context.Background(), p, Options{Values: status}); err != nil {
			b.Fatal(err)
		}
		if len(keys) != benchRevisions() {
			b.Fatalf("%d keys, want %d", len(keys), benchRevisions())
		}
	}
	b.StopTimer()
	rss.report(b)
}

// BenchmarkTxCheck checks the same file with bbolt: Open and Tx.Check, as
// etcdutl's snapshot status does.
func BenchmarkTxCheck(b *testing.B) {
	p := benchDB(b)
	b.ReportAllocs()
	rss := startPeakRSS(b)
	b.ResetTimer()
	for b.Loop() {
		db, err := bolt.Open(p, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if err := db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
	b.StopTimer()
	rss.report(b)
}

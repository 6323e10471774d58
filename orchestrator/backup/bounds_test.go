package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
)

// writeTar writes a .tar.gz whose entries come from add, and returns its path.
func writeTar(t *testing.T, dir, name string, level int, add func(tw *tar.Writer)) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	gz, _ := gzip.NewWriterLevel(f, level)
	tw := tar.NewWriter(gz)
	add(tw)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func addFile(t *testing.T, tw *tar.Writer, name string, body []byte) {
	t.Helper()
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
}

func TestTarballEntryLimit(t *testing.T) {
	p := writeTar(t, t.TempDir(), "static_kuberesources_x.tar.gz", gzip.BestSpeed, func(tw *tar.Writer) {
		for i := 0; i < DefaultMaxEntries+5000; i++ {
			addFile(t, tw, fmt.Sprintf("static-pod-resources/f%d", i), nil)
		}
	})
	start := time.Now()
	_, err := CheckTarball(context.Background(), p, TarCheck{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d entries", DefaultMaxEntries)) || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want the entry limit naming the file", err)
	}
	t.Logf("refused after %s", time.Since(start))
	info, err := CheckTarball(context.Background(), p, TarCheck{MaxEntries: DefaultMaxEntries + 5000})
	if err != nil || info.Entries != DefaultMaxEntries+5000 {
		t.Fatalf("with a higher limit: %+v, %v", info, err)
	}
}

// TestTarballWalkStopsOnCancel: a tarball that takes long to read (here a
// 512 MiB entry of zeros) stops within moments of SIGINT or SIGTERM.
func TestTarballWalkStopsOnCancel(t *testing.T) {
	zeros := make([]byte, 1<<20)
	p := writeTar(t, t.TempDir(), "static_kuberesources_x.tar.gz", gzip.BestSpeed, func(tw *tar.Writer) {
		if err := tw.WriteHeader(&tar.Header{Name: "static-pod-resources/big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 512 << 20}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 512; i++ {
			tw.Write(zeros)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	start := time.Now()
	_, err := CheckTarball(ctx, p, TarCheck{})
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("err = %v, want it stopped by the cancel", err)
	}
	if took > 2*time.Second {
		t.Errorf("stopped after %s", took)
	}
	// Already canceled: nothing is read.
	if _, err := CheckTarball(ctx, p, TarCheck{}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled before the start: err = %v", err)
	}
}

// dbFile is a real etcd backend (a db file copied from a data dir), which
// Verify accepts as a snapshot with SkipHashCheck.
func dbFile(t *testing.T) []byte {
	t.Helper()
	p := etcdtest.NewPKI(t)
	dir := filepath.Join(t.TempDir(), "data")
	peer, client := etcdtest.FreeURL(t), etcdtest.FreeURL(t)
	m := p.Start(t, etcdtest.MemberSpec{Name: "m0", DataDir: dir, PeerURL: peer, ClientURL: client, InitialCluster: "m0=" + peer})
	cli := p.Client(t, client)
	etcdtest.PutKeys(t, cli, 0, 50)
	cli.Close()
	m.Stop()
	b, err := os.ReadFile(filepath.Join(dir, "member/snap/db"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func singleFile(t *testing.T, snapshot []byte) *Set {
	t.Helper()
	dir := t.TempDir()
	writeTar(t, dir, "snapshot_db_kuberesources_2026-01-02_030405.tar.gz", gzip.BestSpeed, func(tw *tar.Writer) {
		addFile(t, tw, "snapshot_2026-01-02_030405.db", snapshot)
		addFile(t, tw, "static-pod-resources/kube-apiserver-pod-7/x", []byte("y"))
	})
	set, err := Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestScratchCopyRemoved: the snapshot extracted from a single-file backup
// never outlives its use: a damaged one is removed before Verify returns,
// a good one by Report.Close, in the given work folder and in a
// temporary one alike.
func TestScratchCopyRemoved(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	damaged := make([]byte, 64<<10)
	copy(damaged, "not a bbolt file")

	work := t.TempDir()
	_, err := Verify(singleFile(t, damaged), Options{WorkDir: work, SkipHashCheck: true})
	if err == nil || !strings.Contains(err.Error(), "fails etcd's integrity check") {
		t.Fatalf("damaged snapshot: err = %v", err)
	}
	if left := entries(t, work); len(left) != 0 {
		t.Errorf("a damaged backup left %v in the work folder", left)
	}
	if _, err := Verify(singleFile(t, damaged), Options{SkipHashCheck: true}); err == nil {
		t.Fatal("damaged snapshot accepted")
	}
	if left := entries(t, tmp); len(left) != 0 {
		t.Errorf("a damaged backup left %v in TMPDIR", left)
	}

	good := dbFile(t)
	set := singleFile(t, good)
	rep, err := Verify(set, Options{WorkDir: work, SkipHashCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(set.Snapshot) != work {
		t.Fatalf("snapshot extracted to %s, want %s", set.Snapshot, work)
	}
	if b, err := os.ReadFile(set.Snapshot); err != nil || len(b) != len(good) {
		t.Fatalf("extracted copy: %d bytes, %v", len(b), err)
	}
	if err := rep.Close(); err != nil {
		t.Fatal(err)
	}
	if left := entries(t, work); len(left) != 0 || set.Snapshot != "" {
		t.Errorf("after Close: work folder holds %v, Set.Snapshot %q", left, set.Snapshot)
	}
	if err := rep.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	rep, err = Verify(singleFile(t, good), Options{SkipHashCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries(t, tmp)) != 1 {
		t.Fatalf("TMPDIR holds %v, want the scratch folder", entries(t, tmp))
	}
	rep.Close()
	if left := entries(t, tmp); len(left) != 0 {
		t.Errorf("after Close TMPDIR holds %v", left)
	}
}

// TestTarballTrailerBounded: data after the archive's end is not read
// without bound (a small gzip could expand to terabytes there).
func TestTarballTrailerBounded(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "static_kuberesources_x.tar.gz")
	f, _ := os.Create(p)
	gz, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	addFile(t, tw, "static-pod-resources/x", []byte("y"))
	tw.Close()
	gz.Write(make([]byte, 8<<20))
	gz.Close()
	f.Close()
	_, err := CheckTarball(context.Background(), p, TarCheck{})
	if err == nil || !strings.Contains(err.Error(), "follow the end of the tar archive") {
		t.Fatalf("err = %v", err)
	}
}

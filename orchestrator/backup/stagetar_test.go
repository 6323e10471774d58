package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tarEntry is one entry of a test tarball.
type tarEntry struct {
	name string
	typ  byte
	link string
	body []byte
}

// tarOffsets are compressed sizes at which a test tarball's gzip stream
// was flushed: a file cut there ends at that point of the archive.
type tarOffsets struct {
	snapMid, snapEnd int64 // half of the snapshot entry's body, all of it
}

// countWriter counts what is written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// writeSingleFile writes entries as a .tar.gz with Go's tar and gzip,
// flushing gzip in the middle and at the end of the first *.db entry.
func writeSingleFile(t *testing.T, p string, entries []tarEntry) tarOffsets {
	t.Helper()
	var buf bytes.Buffer
	cw := &countWriter{w: &buf}
	gz := gzip.NewWriter(cw)
	tw := tar.NewWriter(gz)
	var off tarOffsets
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}); err != nil {
			t.Fatal(err)
		}
		snap := strings.HasSuffix(e.name, ".db") && off.snapEnd == 0
		half := len(e.body) / 2
		if _, err := tw.Write(e.body[:half]); err != nil {
			t.Fatal(err)
		}
		if snap {
			gz.Flush()
			off.snapMid = cw.n
		}
		if _, err := tw.Write(e.body[half:]); err != nil {
			t.Fatal(err)
		}
		if snap {
			tw.Flush()
			gz.Flush()
			off.snapEnd = cw.n
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return off
}

// countOpens makes walkTar's opens and reads countable for the test.
func countOpens(t *testing.T) (opens, read *int64) {
	opens, read = new(int64), new(int64)
	orig := openTarball
	openTarball = func(p string) (io.ReadCloser, error) {
		f, err := orig(p)
		if err != nil {
			return nil, err
		}
		*opens++
		return readCounter{f, read}, nil
	}
	t.Cleanup(func() { openTarball = orig })
	return opens, read
}

type readCounter struct {
	io.ReadCloser
	n *int64
}

func (r readCounter) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	*r.n += int64(n)
	return n, err
}

// TestStageTarball: one read of a single-file backup, every byte of the
// file read once, stages the same db file and figures as StageSnapshot
// does from the snapshot itself, and the same TarInfo as CheckTarball.
func TestStageTarball(t *testing.T) {
	body := dbFile(t)
	sum := sha256.Sum256(body)
	snap := append(append([]byte{}, body...), sum[:]...)
	dir := t.TempDir()
	ctx := context.Background()
	raw := filepath.Join(dir, "snapshot.db")
	if err := os.WriteFile(raw, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := StageSnapshot(ctx, raw, filepath.Join(dir, "want-db"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDB, err := os.ReadFile(filepath.Join(dir, "want-db"))
	if err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "snapshot_db_kuberesources_2026-01-02_030405.tar.gz")
	writeSingleFile(t, tarball, []tarEntry{
		{name: "snapshot_2026-01-02_030405.db", body: snap},
		{name: "static-pod-resources/kube-apiserver-pod-7/", typ: tar.TypeDir},
		{name: "static-pod-resources/kube-apiserver-pod-7/x", body: []byte("y")},
	})
	wantTar, err := CheckTarball(ctx, tarball, TarCheck{Single: true})
	if err != nil {
		t.Fatal(err)
	}

	opens, read := countOpens(t)
	staged := filepath.Join(dir, "staging", "db")
	os.MkdirAll(filepath.Dir(staged), 0o700)
	var last, total int64
	ti, info, err := StageTarball(ctx, tarball, TarCheck{}, staged, false, func(done, all int64) { last, total = done, all })
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(tarball)
	if *opens != 1 || *read != st.Size() {
		t.Errorf("the tarball was opened %d times and %d bytes read, want once and its %d bytes", *opens, *read, st.Size())
	}
	got, err := os.ReadFile(staged)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wantDB) {
		t.Errorf("staged %d bytes unlike StageSnapshot's %d", len(got), len(wantDB))
	}
	if !info.HasHash || info.Size != int64(len(snap)) || info.Status != want.Status || info.Check.MaxRevision != want.Check.MaxRevision {
		t.Errorf("staged %+v, StageSnapshot says %+v", info, want)
	}
	if ti.Snapshot != wantTar.Snapshot || ti.Entries != wantTar.Entries || ti.Bytes != wantTar.Bytes || !equal(ti.TopDirs, wantTar.TopDirs) {
		t.Errorf("tarball info %+v, CheckTarball says %+v", ti, wantTar)
	}
	if len(ti.Files) != 2 || ti.Files[1].Header.Name != "static-pod-resources/kube-apiserver-pod-7/x" || string(ti.Files[1].Body) != "y" {
		t.Errorf("kept files %+v, want the resources' folder and file", ti.Files)
	}
	if last != total || total != st.Size()+int64(len(body)) {
		t.Errorf("progress ended at %d of %d, want the tarball's %d bytes and the snapshot's %d", last, total, st.Size(), len(body))
	}
}

// TestSnapshotEntryOutsideTheBudget: a single-file backup's snapshot is
// staged into the data dir, not extracted with the resources, so a
// snapshot larger than the extract budget (real ones pass 2 GiB) is not
// refused by it; the resources are still held to it.
func TestSnapshotEntryOutsideTheBudget(t *testing.T) {
	body := dbFile(t)
	sum := sha256.Sum256(body)
	snap := append(append([]byte{}, body...), sum[:]...)
	dir := t.TempDir()
	p := filepath.Join(dir, "snapshot_db_kuberesources_2026-01-02_030405.tar.gz")
	writeSingleFile(t, p, []tarEntry{{name: "snapshot_2026-01-02_030405.db", body: snap}, {name: "static-pod-resources/x", body: []byte("y")}})
	check := TarCheck{Budget: 1}
	if _, _, err := StageTarball(context.Background(), p, check, filepath.Join(dir, "db"), false, nil); err != nil {
		t.Errorf("StageTarball: %v", err)
	}
	check.Single = true
	if _, err := CheckTarball(context.Background(), p, check); err != nil {
		t.Errorf("CheckTarball: %v", err)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestStageTarballRefuses: a bad single-file backup is refused with
// CheckTarball's message where CheckTarball refuses it, and with
// StageSnapshot's where the snapshot is bad, and nothing is left staged.
func TestStageTarballRefuses(t *testing.T) {
	body := dbFile(t)
	sum := sha256.Sum256(body)
	snap := append(append([]byte{}, body...), sum[:]...)
	flipped := append([]byte{}, snap...)
	flipped[len(body)/2] ^= 1
	res := tarEntry{name: "static-pod-resources/x", body: []byte("y")}
	snapEntry := tarEntry{name: "snapshot_2026-01-02_030405.db", body: snap}
	cut := func(at func(off tarOffsets, size int64) int64) func(string, tarOffsets) {
		return func(p string, off tarOffsets) {
			st, _ := os.Stat(p)
			if err := os.Truncate(p, at(off, st.Size())); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name    string
		entries []tarEntry
		damage  func(p string, off tarOffsets)
		check   TarCheck
		want    string
	}{
		{name: "absolute path", entries: []tarEntry{snapEntry, {name: "/etc/shadow", body: []byte("x")}}, want: "absolute path"},
		{name: "..", entries: []tarEntry{snapEntry, {name: "static-pod-resources/../../x", body: []byte("x")}}, want: `climbs out with ".."`},
		{name: "escaping symlink", entries: []tarEntry{snapEntry, {name: "static-pod-resources/l", typ: tar.TypeSymlink, link: "../../etc"}}, want: "points outside"},
		{name: "device node", entries: []tarEntry{snapEntry, {name: "static-pod-resources/sda", typ: tar.TypeBlock}}, want: "device node"},
		{name: "too many entries", entries: []tarEntry{snapEntry, res, res}, check: TarCheck{MaxEntries: 2}, want: "more than 2 entries"},
		{name: "resources past the budget", entries: []tarEntry{snapEntry, res, {name: "static-pod-resources/z", body: []byte("zz")}}, check: TarCheck{Budget: 2}, want: "past 2 bytes"},
		{name: "two snapshots", entries: []tarEntry{snapEntry, res, {name: "other.db", body: snap}}, want: "two snapshots"},
		{name: "no snapshot", entries: []tarEntry{res}, want: "holds no snapshot"},
		{name: "snapshot fails its sha256", entries: []tarEntry{{name: snapEntry.name, body: flipped}, res}, want: "is damaged: its sha256"},
		{name: "snapshot without trailer", entries: []tarEntry{{name: snapEntry.name, body: body}, res}, want: "has no sha256 trailer"},
		{name: "snapshot empty", entries: []tarEntry{{name: snapEntry.name}, res}, want: "is empty"},
		{name: "snapshot entry truncated", entries: []tarEntry{snapEntry, res}, want: "damaged or truncated",
			damage: cut(func(off tarOffsets, _ int64) int64 { return off.snapMid })},
		{name: "gzip cut after the snapshot", entries: []tarEntry{snapEntry, res}, want: "damaged or truncated",
			damage: cut(func(off tarOffsets, _ int64) int64 { return off.snapEnd })},
		{name: "gzip footer cut", entries: []tarEntry{snapEntry, res}, want: "damaged or truncated",
			damage: cut(func(_ tarOffsets, size int64) int64 { return size - 4 })},
		{name: "gzip checksum wrong", entries: []tarEntry{snapEntry, res}, want: "checksum", damage: func(p string, _ tarOffsets) {
			b, _ := os.ReadFile(p)
			b[len(b)-8] ^= 1
			os.WriteFile(p, b, 0o600)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "snapshot_db_kuberesources_2026-01-02_030405.tar.gz")
			off := writeSingleFile(t, p, c.entries)
			if c.damage != nil {
				c.damage(p, off)
			}
			staged := filepath.Join(dir, "db")
			_, _, err := StageTarball(context.Background(), p, c.check, staged, false, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			c.check.Single = true
			if _, cerr := CheckTarball(context.Background(), p, c.check); cerr != nil && cerr.Error() != err.Error() {
				t.Errorf("StageTarball says %q, CheckTarball %q", err, cerr)
			}
			if _, err := os.Stat(staged); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the staged copy is left behind (%v)", err)
			}
		})
	}
}

// TestVerifyReadsASingleFileOnce: with Options.SingleFile, Verify reads a
// single-file backup once and extracts nothing; without it, it reads the
// tarball twice (check, extract) and the snapshot's copy once more.
func TestVerifyReadsASingleFileOnce(t *testing.T) {
	body := dbFile(t)
	sum := sha256.Sum256(body)
	set := singleFile(t, append(body, sum[:]...))
	staged := filepath.Join(t.TempDir(), "db")
	opens, _ := countOpens(t)
	rep, err := Verify(set, Options{SingleFile: func(ctx context.Context, tarball string, c TarCheck) (*TarInfo, *SnapshotInfo, error) {
		return StageTarball(ctx, tarball, c, staged, false, nil)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if *opens != 1 || set.Snapshot != "" || rep.Resources.Snapshot == "" || !rep.Snapshot.HasHash {
		t.Errorf("one pass: %d opens, Set.Snapshot %q, %+v", *opens, set.Snapshot, rep)
	}
	*opens = 0
	rep, err = Verify(set, Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	if *opens != 2 || set.Snapshot == "" {
		t.Errorf("the longer way: %d opens, Set.Snapshot %q", *opens, set.Snapshot)
	}
}

// TestStageTarballStopsOnCancel: a canceled pass stops within moments in
// the middle of a large snapshot entry, and leaves nothing staged.
func TestStageTarballStopsOnCancel(t *testing.T) {
	zeros := make([]byte, 1<<20)
	dir := t.TempDir()
	p := writeTar(t, dir, "snapshot_db_kuberesources_x.tar.gz", gzip.BestSpeed, func(tw *tar.Writer) {
		if err := tw.WriteHeader(&tar.Header{Name: "snapshot.db", Typeflag: tar.TypeReg, Mode: 0o644, Size: 512<<20 + sha256.Size}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 512; i++ {
			tw.Write(zeros)
		}
		tw.Write(zeros[:sha256.Size])
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	start := time.Now()
	staged := filepath.Join(dir, "db")
	_, _, err := StageTarball(ctx, p, TarCheck{Budget: 1 << 30}, staged, false, nil)
	took := time.Since(start)
	t.Logf("%v after %s", err, took)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("err = %v, want it stopped by the cancel", err)
	}
	if took > 2*time.Second {
		t.Errorf("stopped after %s", took)
	}
	if _, err := os.Stat(staged); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the staged copy is left behind (%v)", err)
	}
}

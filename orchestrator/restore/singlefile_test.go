package restore_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

// watchOpens counts a file's opens with inotify, from now until each call
// of the function it returns. Closes are watched too: the kernel merges an
// event into an identical one still unread, so two opens in a row would
// count once.
func watchOpens(t *testing.T, p string) func() int {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, p, unix.IN_OPEN|unix.IN_CLOSE_NOWRITE); err != nil {
		t.Fatal(err)
	}
	opens := 0
	buf := make([]byte, 64<<10)
	return func() int {
		for {
			n, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				return opens
			}
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				if mask&unix.IN_Q_OVERFLOW != 0 {
					t.Fatal("inotify queue overflowed")
				}
				if mask&unix.IN_OPEN != 0 {
					opens++
				}
				off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
			}
		}
	}
}

// TestSingleFileRestoreReadsTheTarballOnce: a single-file backup is opened
// once in the whole restore (the one pass of backup.StageTarball, whose
// tests count that it reads every byte once; the static resources are
// extracted from the entries that pass kept), nothing is extracted into
// the work dir, the resources are written, and etcd serves every key.
func TestSingleFileRestoreReadsTheTarballOnce(t *testing.T) {
	s := scene(t, profile.OpenShift43)
	tarball := s.SingleFileBackup(t)
	lost := filepath.Join(s.Root, "etc/kubernetes/static-pod-resources/kube-apiserver-pod-7")
	if err := os.RemoveAll(lost); err != nil {
		t.Fatal(err)
	}
	opens := watchOpens(t, tarball)
	var out bytes.Buffer
	o := options(s, &out)
	restored := -1
	o.AfterStep = func(step string) {
		if step == "restore-snapshot" {
			restored = opens()
		}
	}
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if restored != 1 {
		t.Errorf("the tarball was opened %d times by the end of restore-snapshot, want once\n%s", restored, out.String())
	}
	if n := opens(); n != 1 {
		t.Errorf("the tarball was opened %d times in the whole restore, want once\n%s", n, out.String())
	}
	if _, err := os.Stat(filepath.Join(lost, "configmaps/etcd-serving-ca/ca-bundle.crt")); err != nil {
		t.Errorf("lost resources not restored: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "cannot be staged") {
		t.Errorf("the snapshot was not staged:\n%s", out.String())
	}
	if work, _ := filepath.Glob(filepath.Join(s.Root, "var/lib/etcd-rescue/work/*/*")); len(work) > 0 {
		t.Errorf("the snapshot was extracted: %v", work)
	}
	s.CheckRestored(t, startFromManifest(t, s))
}

// tarEntry is one entry of a rewritten single-file backup.
type tarEntry struct {
	hdr  tar.Header
	body []byte
}

// cutAt says where to truncate a rewritten single-file backup, given the
// compressed sizes at the middle and the end of its snapshot entry and
// the file's size.
type cutAt func(snapMid, snapEnd, size int64) int64

// badSingleFile rewrites the scene's backup as a single-file backup with
// Go's tar and gzip: edit changes its entries (the snapshot first, as the
// 4.3.0/4.3.1 script wrote it), and cut, if set, truncates the file.
func badSingleFile(edit func(es []tarEntry) []tarEntry, cut cutAt) func(*testing.T, *disaster.Scene, *restore.Options) {
	return func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
		p := s.SingleFileBackup(t)
		es := edit(readTarGz(t, p))
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		var mid, end int64
		for _, e := range es {
			e.hdr.Size = int64(len(e.body))
			if err := tw.WriteHeader(&e.hdr); err != nil {
				t.Fatal(err)
			}
			snap := strings.HasSuffix(e.hdr.Name, ".db") && end == 0
			half := len(e.body) / 2
			tw.Write(e.body[:half])
			if snap {
				gz.Flush()
				mid = int64(buf.Len())
			}
			tw.Write(e.body[half:])
			if snap {
				tw.Flush()
				gz.Flush()
				end = int64(buf.Len())
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		gz.Close()
		b := buf.Bytes()
		if cut != nil {
			b = b[:cut(mid, end, int64(len(b)))]
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func readTarGz(t *testing.T, p string) []tarEntry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var es []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, tarEntry{*h, body})
	}
	if len(es) == 0 || !strings.HasSuffix(es[0].hdr.Name, ".db") {
		t.Fatalf("%s does not start with its snapshot", p)
	}
	return es
}

func unchanged(es []tarEntry) []tarEntry { return es }

func TestBadSingleFileBackupFailsClearlyAndChangesNothing(t *testing.T) {
	runFaults(t, []fault{
		{"single-file: snapshot entry truncated", badSingleFile(unchanged, func(mid, _, _ int64) int64 { return mid }), "damaged or truncated"},
		{"single-file: snapshot fails its sha256", badSingleFile(func(es []tarEntry) []tarEntry {
			es[0].body[len(es[0].body)/2] ^= 0x5a
			return es
		}, nil), "is damaged: its sha256"},
		{"single-file: gzip stream truncated after the snapshot entry", badSingleFile(unchanged, func(_, end, _ int64) int64 { return end }), "damaged or truncated"},
		{"single-file: gzip footer cut", badSingleFile(unchanged, func(_, _, size int64) int64 { return size - 4 }), "damaged or truncated"},
		{"single-file: two snapshots", badSingleFile(func(es []tarEntry) []tarEntry {
			second := es[0]
			second.hdr.Name = "snapshot-2.db"
			return append(es, second)
		}, nil), "two snapshots"},
		{"single-file: no snapshot", badSingleFile(func(es []tarEntry) []tarEntry { return es[1:] }, nil), "holds no snapshot"},
		{"single-file: snapshot without trailer", badSingleFile(func(es []tarEntry) []tarEntry {
			es[0].body = es[0].body[:len(es[0].body)-32]
			return es
		}, nil), "has no sha256 trailer"},
		{"single-file: absolute path after the snapshot", badSingleFile(func(es []tarEntry) []tarEntry {
			return append(es, tarEntry{tar.Header{Name: "/etc/shadow", Typeflag: tar.TypeReg, Mode: 0o600}, []byte("x")})
		}, nil), "absolute path"},
	})
}

// TestSingleFileDryRunExtractsOutsideTheRoot: a dry run does not stage; it
// reads the single-file backup the longer way, extracting the snapshot to
// a temporary folder it removes, and changes nothing.
func TestSingleFileDryRunExtractsOutsideTheRoot(t *testing.T) {
	s := scene(t, profile.OpenShift43)
	s.SingleFileBackup(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	before, snap := disaster.TreeHash(t, s.Root), disaster.Snap(t, s.Root)
	var out bytes.Buffer
	o := options(s, &out)
	o.DryRun = true
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	if disaster.TreeHash(t, s.Root) != before {
		t.Fatalf("the dry run changed the root: %v", snap.Changes(t))
	}
	for _, want := range []string{"single-file", "restore-snapshot: would run: restore " + tmp} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the plan lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the dry run left %v in TMPDIR", left)
	}
}

// TestSingleFileOnAFullDiskResumes: a data dir too full for the staging
// copy has verify-backup read the backup the longer way (extracted to the
// work folder), the restore fails on the full disk with the old data kept,
// and once space is freed the same command stages in one pass and restores.
func TestSingleFileOnAFullDiskResumes(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	s.SingleFileBackup(t)
	dataDir := fillDataDir(t, s)
	var out bytes.Buffer
	o := options(s, &out)
	o.DiskFree = func(string) (uint64, error) { return 1 << 40, nil }
	err := restore.Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(out.String(), "cannot be staged") {
		t.Fatalf("restore on a full disk: err = %v\n%s", err, out.String())
	}
	freeSpace(t, dataDir, out.String())
	out.Reset()
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("re-run after freeing space: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "cannot be staged") {
		t.Errorf("the re-run did not stage:\n%s", out.String())
	}
	s.CheckRestored(t, startFromManifest(t, s))
}

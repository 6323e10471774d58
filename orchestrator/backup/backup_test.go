package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// TestBackupOfRealClusterVerifiesAndDamageIsCaught takes a backup of a real
// three-member TLS cluster with 10,000 keys, verifies it, then verifies
// damaged copies of it.
func TestBackupOfRealClusterVerifiesAndDamageIsCaught(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43})
	set, err := backup.Find(s.BackupDir)
	if err != nil {
		t.Fatal(err)
	}
	if set.Form != backup.Pair || set.Snapshot != s.Backup.Snapshot || set.Resources != s.Backup.Resources {
		t.Fatalf("Find = %+v, want the pair Save wrote (%+v)", set, s.Backup)
	}
	rep, err := backup.Verify(set, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Snapshot.HasHash || rep.Snapshot.Status.TotalKey < s.Keys {
		t.Fatalf("snapshot status %+v: want a hash trailer and at least %d keys", rep.Snapshot, s.Keys)
	}
	var b strings.Builder
	rep.Print(&b)
	for _, want := range []string{"checked (sha256 trailer matches)", "integrity check passed", "static-pod-resources"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	snap, err := os.ReadFile(set.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	tarball, err := os.ReadFile(set.Resources)
	if err != nil {
		t.Fatal(err)
	}
	snapName, tarName := filepath.Base(set.Snapshot), filepath.Base(set.Resources)

	cases := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"flipped byte in the middle", map[string][]byte{snapName: flip(snap, len(snap)/2), tarName: tarball}, "is damaged: its sha256"},
		{"flipped byte in the header", map[string][]byte{snapName: flip(snap, 20), tarName: tarball}, "is damaged: its sha256"},
		{"flipped byte in the trailer", map[string][]byte{snapName: flip(snap, len(snap)-3), tarName: tarball}, "is damaged: its sha256"},
		{"truncated", map[string][]byte{snapName: snap[:len(snap)/3], tarName: tarball}, "has no sha256 trailer"},
		{"truncated to a sector", map[string][]byte{snapName: snap[:len(snap)-32-512], tarName: tarball}, "has no sha256 trailer"},
		{"empty", map[string][]byte{snapName: {}, tarName: tarball}, "is empty"},
		{"missing tarball", map[string][]byte{snapName: snap}, "is incomplete: " + snapName + " has no " + tarName},
		{"missing snapshot", map[string][]byte{tarName: tarball}, "has no " + snapName},
		{"tarball with ..", map[string][]byte{snapName: snap, tarName: tarGz(t, entry{name: "static-pod-resources/../../etc/passwd", body: "x"})}, `climbs out with ".."`},
		{"tarball with absolute path", map[string][]byte{snapName: snap, tarName: tarGz(t, entry{name: "/etc/passwd", body: "x"})}, "absolute path"},
		{"tarball with escaping symlink", map[string][]byte{snapName: snap, tarName: tarGz(t, entry{name: "static-pod-resources/x", link: "../../../etc", typ: tar.TypeSymlink})}, "points outside"},
		{"tarball with escaping hard link", map[string][]byte{snapName: snap, tarName: tarGz(t, entry{name: "static-pod-resources/x", link: "../etc/shadow", typ: tar.TypeLink})}, "hard link"},
		{"tarball with device node", map[string][]byte{snapName: snap, tarName: tarGz(t, entry{name: "static-pod-resources/sda", typ: tar.TypeBlock})}, "device node"},
		{"tarball expanding to 10 GB", map[string][]byte{snapName: snap, tarName: bomb(t)}, "past 2147483648 bytes"},
		{"not a bbolt file", map[string][]byte{snapName: withTrailer(make([]byte, 4096)), tarName: tarball}, "fails etcd's integrity check"},
		{"tarball truncated", map[string][]byte{snapName: snap, tarName: tarball[:len(tarball)/2]}, "truncated"},
	}
	t.Run("single-file form", func(t *testing.T) {
		dir := t.TempDir()
		single := tarGz(t, entry{name: "snapshot_2026-01-02_030405.db", body: string(snap)}, entry{name: "static-pod-resources/kube-apiserver-pod-7/x", body: "y"})
		if err := os.WriteFile(filepath.Join(dir, "snapshot_db_kuberesources_2026-01-02_030405.tar.gz"), single, 0o600); err != nil {
			t.Fatal(err)
		}
		set, err := backup.Find(dir)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := backup.Verify(set, backup.Options{WorkDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if set.Form != backup.SingleFile || rep.Snapshot.Status.Hash == 0 || rep.Snapshot.Status.TotalKey < s.Keys {
			t.Fatalf("single-file backup: form %s, status %+v", set.Form, rep.Snapshot.Status)
		}
	})
	t.Run("newest complete pair chosen and older said", func(t *testing.T) {
		dir := t.TempDir()
		for n, b := range map[string][]byte{
			"snapshot_2026-01-01_000000.db": snap, "static_kuberesources_2026-01-01_000000.tar.gz": tarball,
			"snapshot_2026-02-01_000000.db": snap, "static_kuberesources_2026-02-01_000000.tar.gz": tarball,
		} {
			os.WriteFile(filepath.Join(dir, n), b, 0o600)
		}
		set, err := backup.Find(dir)
		if err != nil {
			t.Fatal(err)
		}
		if set.Timestamp != "2026-02-01_000000" || !strings.Contains(strings.Join(set.Notes, " "), "older backup 2026-01-01_000000 not used") {
			t.Fatalf("Find = %+v", set)
		}
	})
	t.Run("hash check skipped only when asked", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, snapName), snap[:len(snap)-32], 0o600)
		os.WriteFile(filepath.Join(dir, tarName), tarball, 0o600)
		set, err := backup.Find(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := backup.Verify(set, backup.Options{}); err == nil || !strings.Contains(err.Error(), "--skip-hash-check") {
			t.Fatalf("without --skip-hash-check: %v", err)
		}
		rep, err := backup.Verify(set, backup.Options{SkipHashCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Snapshot.HasHash || !strings.Contains(strings.Join(rep.Warnings, " "), "no sha256 trailer") {
			t.Fatalf("a snapshot without trailer must be reported: %+v", rep.Warnings)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, b := range c.files {
				if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			set, err := backup.Find(dir)
			if err == nil {
				_, err = backup.Verify(set, backup.Options{})
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0xff
	return c
}

type entry struct {
	name, body, link string
	typ              byte
	size             int64
}

func tarGz(t *testing.T, entries ...entry) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	gz.Close()
	f.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withTrailer appends etcd's sha256 trailer, so only the bbolt check can
// catch the content.
func withTrailer(b []byte) []byte {
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// bomb is a tarball whose one entry claims 10 GB: the budget refuses it at
// its header, before reading the body (which is not there).
func bomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "static-pod-resources/huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 10 << 30}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	gz.Close()
	return buf.Bytes()
}

package qemu

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Ext4Image makes an ext4 filesystem image of sizeMiB at out (default: in
// the test's temporary folder) holding the tree in src (mkfs.ext4 -d), with
// the given label (none when empty).
func Ext4Image(t testing.TB, out, src, label string, sizeMiB int) string {
	t.Helper()
	p := out
	if p == "" {
		p = filepath.Join(t.TempDir(), "disk.ext4")
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"-q", "-F", "-t", "ext4", "-d", src}
	if label != "" {
		args = append(args, "-L", label)
	}
	args = append(args, p)
	if out, err := exec.Command("mkfs.ext4", args...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %v: %v: %s (install e2fsprogs: make deps)", args, err, out)
	}
	return p
}

// CopyFile copies a disk image so a VM can write to its own copy.
func CopyFile(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// FileHash returns a file's sha256, to prove a disk was not written.
func FileHash(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TarGz returns a .tar.gz of regular files (name -> body), in order.
func TarGz(files ...[2]string) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return b.Bytes(), nil
}

// Ext4Tree copies every file of an ext4 disk image into a new folder
// (read with debugfs, without mounting it: the image is not written) and
// returns the folder, so a test can compare what a VM left on a disk.
func Ext4Tree(t testing.TB, image string) string {
	t.Helper()
	out := t.TempDir()
	if b, err := exec.Command("debugfs", "-R", "rdump / "+out, image).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump %s: %v: %s (install e2fsprogs: make deps)", image, err, b)
	}
	return out
}

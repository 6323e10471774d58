package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyBackupLeavesNoScratchCopy: verify-backup of a damaged
// single-file backup fails without leaving the extracted snapshot in TMPDIR.
func TestVerifyBackupLeavesNoScratchCopy(t *testing.T) {
	dir, tmp := t.TempDir(), t.TempDir()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	snap := bytes.Repeat([]byte("not a bbolt file "), 4096)
	for name, body := range map[string][]byte{
		"snapshot_2026-01-02_030405.db":               snap,
		"static-pod-resources/kube-apiserver-pod-7/x": []byte("y"),
	} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		tw.Write(body)
	}
	tw.Close()
	gz.Close()
	if err := os.WriteFile(filepath.Join(dir, "snapshot_db_kuberesources_2026-01-02_030405.tar.gz"), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "verify-backup", "--skip-hash-check", dir)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "fails etcd's integrity check") {
		t.Fatalf("verify-backup of a damaged backup: %v\n%s", err, out)
	}
	left, _ := os.ReadDir(tmp)
	if len(left) != 0 {
		t.Errorf("verify-backup left %v in TMPDIR", left)
	}
}

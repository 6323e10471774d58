package survey_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/fixture"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// TestMasterDataDir finds a kubeadm master's data dir from its manifest
// (a --data-dir and hostPath moved to /srv/etcd), through an absolute
// symlink resolved inside the root; a manifest that does not parse leaves
// the profile's data dir and says why; a root with no etcd manifest is an
// error naming what was looked for.
func TestMasterDataDir(t *testing.T) {
	ca, err := pki.NewCA("etcd-signer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := fixture.Write(root, fixture.Master{Profile: profile.Kubeadm, NodeName: "master-0", MemberName: "master-0",
		IP: "192.0.2.10", DNSName: "etcd-0.example.com", ClusterDomain: "example.com"}, ca); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml")
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, []byte(strings.ReplaceAll(string(b), "/var/lib/etcd", "/srv/etcd")), 0o644); err != nil {
		t.Fatal(err)
	}
	// /srv is a link to the data disk, as the master mounts it.
	if err := os.MkdirAll(filepath.Join(root, "mnt/data/etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/mnt/data", filepath.Join(root, "srv")); err != nil {
		t.Fatal(err)
	}

	dir, rel, why, err := survey.MasterDataDir(root, nil, "master-0")
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(root, "mnt/data/etcd") || rel != "srv/etcd" || !strings.Contains(why, "the manifest's --data-dir /srv/etcd") {
		t.Errorf("got %s (/%s, %s), want %s/mnt/data/etcd (/srv/etcd, the manifest's)", dir, rel, why, root)
	}

	if err := os.WriteFile(manifest, []byte("kind: Pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, rel, why, err = survey.MasterDataDir(root, nil, "master-0")
	if err != nil || dir != filepath.Join(root, "var/lib/etcd") || rel != "var/lib/etcd" || !strings.Contains(why, "the kubeadm profile's; ") || !strings.Contains(why, "etcd manifest") {
		t.Errorf("an unreadable manifest: got %s (/%s, %s), %v; want the kubeadm profile's /var/lib/etcd and the manifest's error", dir, rel, why, err)
	}

	if _, _, _, err := survey.MasterDataDir(t.TempDir(), nil, ""); err == nil || !strings.Contains(err.Error(), "no etcd manifest found") {
		t.Errorf("a root without a manifest: %v", err)
	}
}

package restore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

// TestRestoreReadsTheBackupOnce takes the snapshot away once the
// verify-backup step has read it: the restore goes on from the copy that
// step staged and checked, and etcd serves every key from it.
func TestRestoreReadsTheBackupOnce(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	var out bytes.Buffer
	o := options(s, &out)
	gone := s.Backup.Snapshot + ".gone"
	o.AfterStep = func(step string) {
		if step == "verify-backup" {
			if err := os.Rename(s.Backup.Snapshot, gone); err != nil {
				t.Error(err)
			}
		}
	}
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if err := os.Rename(gone, s.Backup.Snapshot); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(s.Root, s.Profile.DataDir, ".etcd-rescue-restore-*"))
	if len(left) > 0 || strings.Contains(out.String(), "cannot be staged") {
		t.Fatalf("staging left %v\n%s", left, out.String())
	}
	s.CheckRestored(t, startFromManifest(t, s))
}

package drill_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// TestDrillCorruptBackup boots the rescue image with the restore role on a
// survivor whose backup snapshot is damaged: the console must end with
// RESTORE-FAILED and the reason, and the survivor's old data dir must be
// on its disk exactly as before (read back with debugfs after the VM
// stopped).
func TestDrillCorruptBackup(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 300, Lost: 20})
	dir := t.TempDir()

	// The backup volume, with a few bytes of the snapshot flipped in the
	// middle (the sha256 trailer no longer matches).
	sv := newSurvivor(t, s, func(file string, b []byte) []byte {
		if file == s.Backup.Snapshot {
			for i := len(b) / 2; i < len(b)/2+16; i++ {
				b[i] ^= 0xff
			}
		}
		return b
	}, ignition.AfterReboot)
	rootDisk := sv.rootDisk(t)
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	before := disaster.TreeHash(t, dataDir)
	vm := sv.boot(t, "restore-corrupt", rootDisk)
	line, err := vm.ExpectRE(regexp.MustCompile(`RESTORE-FAILED: [^\r\n]*\r?\n`), 8*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimSpace(line)
	t.Logf("marker: %s", line)
	if !strings.Contains(strings.ToLower(line), "snapshot") {
		t.Errorf("the failure does not say what is wrong with the backup: %s", line)
	}
	if strings.Contains(vm.Console(), "RESTORE-OK") {
		t.Errorf("RESTORE-OK printed for a corrupted backup")
	}
	if _, err := vm.Expect("etcd-rescue: powering off", time.Minute); err != nil {
		t.Error(err)
	}
	if err := vm.Wait(time.Minute); err != nil {
		t.Fatal(err)
	}

	// The disk after the VM stopped: the data dir is the old one, byte for
	// byte, and nothing was moved aside.
	out := filepath.Join(dir, "after")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("debugfs", "-R", "rdump "+s.Profile.DataDir+" "+out, rootDisk).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v: %s", err, b)
	}
	after := filepath.Join(out, filepath.Base(s.Profile.DataDir))
	if got := disaster.TreeHash(t, after); got != before {
		t.Errorf("the survivor's data dir changed on its disk: %v", disaster.TreeDiff(t, dataDir, after))
	}
	if b, err := exec.Command("debugfs", "-R", "ls -p /"+s.Profile.DataDir+"/member/snap", rootDisk).CombinedOutput(); err != nil || !strings.Contains(string(b), "db") {
		t.Errorf("member/snap/db not on the disk after the failed restore: %v: %s", err, b)
	}
	t.Logf("old data dir intact on the disk (%s)", before[:16])
}

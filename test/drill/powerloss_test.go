package drill_test

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// TestDrillPowerLossDuringRestore powers the survivor off hard (QEMU
// killed: whatever the guest had not yet written to its disk is gone)
// while the rescue image restores it, at several points inside the
// restore, then boots the rescue image again on the same disk. The second
// boot must resume the recorded run and end RESTORE-OK; read back from the
// disk afterwards, the old data dir is kept byte for byte and a real etcd
// started from the rewritten manifest serves exactly the keys of the
// backup as a new one-member cluster.
func TestDrillPowerLossDuringRestore(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 3000, Lost: 50})
	sv := newSurvivor(t, s, nil, ignition.AfterPoweroff)
	oldData := disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.DataDir))

	// Where the power goes: the moment a step starts, plus a delay that
	// lands inside it.
	cuts := []powerCut{
		stepStarted("keep-old-state", 100*time.Millisecond),
		stepStarted("restore-snapshot", 100*time.Millisecond),
		stepStarted("rewrite-manifest", 0),
	}
	for i, cut := range cuts {
		t.Run(cut.step, func(t *testing.T) {
			got := sv.powerLoss(t, fmt.Sprintf("powerloss-%d", i), cut, oldData)
			cli := s.StartFromManifest(t, got)
			id := s.CheckRestored(t, cli)
			t.Logf("after the power loss at %s: resumed, %d keys served, cluster ID %x, old data dir kept", cut.step, s.Keys, id)
		})
	}
}

// powerCut is where the power goes in a restore: delay after the console
// first shows at, inside the step named step.
type powerCut struct {
	step  string
	at    *regexp.Regexp
	delay time.Duration
}

// stepStarted cuts the power delay after the console says step started.
func stepStarted(step string, delay time.Duration) powerCut {
	return powerCut{step, regexp.MustCompile(`step \d+/\d+ ` + step + `: started`), delay}
}

// powerLoss boots the restore role on a fresh root disk, powers it off
// hard at cut, checks the disk with e2fsck, and boots it again: the second
// boot must resume the recorded run (or start one, when the power went
// before the journal reached the disk) and end RESTORE-OK. It returns the
// root read back from the disk, after checking that the journal there
// records the run as finished and that the old data dir it kept hashes to
// oldData (disaster.TreeHash of the data dir before the restore).
func (sv *survivor) powerLoss(t *testing.T, name string, cut powerCut, oldData string) string {
	t.Helper()
	rootDisk := sv.rootDisk(t)
	boot := func(n int) *qemu.VM { return sv.boot(t, fmt.Sprintf("%s-boot-%d", name, n), rootDisk) }

	vm := boot(1)
	if _, err := vm.ExpectRE(cut.at, 8*time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(cut.delay)
	vm.Kill()
	if strings.Contains(vm.Console(), "RESTORE-OK") {
		t.Fatalf("the restore ended before the power went: the cut at %s is not inside it", cut.step)
	}
	progress := regexp.MustCompile(`step \d+/\d+ [a-z-]+: (started|done)`).FindAllString(vm.Console(), -1)
	// The journal on the disk after the cut decides what the next boot
	// must do: resume the recorded run, or (when the power went before the
	// run recorded anything) start one.
	recorded := onDisk(t, rootDisk, journal.Path("/", "restore"))
	t.Logf("power off %s after %q; the console had last shown %q; journal on the disk: %v",
		cut.delay, cut.at, progress[len(progress)-1], recorded)

	vm = boot(2)
	if _, err := vm.Expect("RESTORE-OK", 8*time.Minute); err != nil {
		t.Fatal(err)
	}
	if resumed := strings.Contains(vm.Console(), "resuming restore run"); resumed != recorded {
		t.Errorf("journal on the disk %v, but the second boot resumed=%v", recorded, resumed)
	}
	if err := vm.Wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}

	got := dumpRoot(t, rootDisk)
	j, err := journal.Open(got, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if j.Finished == nil {
		t.Errorf("the journal on the disk does not record the run as finished")
	}
	kept := filepath.Join(j.BackupDir(got), sv.scene.Profile.DataDir)
	if h := disaster.TreeHash(t, kept); h != oldData {
		t.Errorf("the old data dir kept on the disk (%s) differs from the one before the restore", kept)
	}
	return got
}

// onDisk reports whether an ext4 disk image holds a file once its journal
// is replayed, as the next mount would (on a copy: the disk itself stays
// as the power loss left it).
func onDisk(t *testing.T, disk, path string) bool {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "replayed.ext4")
	if b, err := exec.Command("cp", "--sparse=always", disk, cp).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", disk, err, b)
	}
	// e2fsck exits 1 or 2 when it replayed or repaired something; 4 and up
	// mean the filesystem is broken.
	b, err := exec.Command("e2fsck", "-fy", cp).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() >= 4) {
		t.Fatalf("e2fsck after the power loss: %v: %s", err, b)
	}
	t.Logf("e2fsck after the power loss: %s", strings.TrimSpace(string(b)))
	b, err = exec.Command("debugfs", "-R", "stat "+path, cp).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs stat: %v: %s", err, b)
	}
	return !strings.Contains(string(b), "File not found")
}

// dumpRoot copies /etc and /var from an ext4 disk image (read with
// debugfs, without mounting it) into a new folder, and returns it.
func dumpRoot(t *testing.T, disk string) string {
	t.Helper()
	out := t.TempDir()
	if b, err := exec.Command("debugfs", "-R", "rdump /etc /var "+out, disk).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v: %s", err, b)
	}
	return out
}

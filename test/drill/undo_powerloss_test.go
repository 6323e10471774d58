package drill_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// TestDrillPowerLossDuringUndo restores the survivor on the host, boots
// the rescue image's undo role on a disk holding the restored root, powers
// the machine off hard (QEMU killed) as the undo starts putting the old
// state back, and boots the undo role again. The second boot must resume
// the recorded undo and end UNDO-OK; read back from the disk afterwards,
// the data dir is the one from before the restore, every file byte for
// byte, the old three-member cluster starts from it and serves every key,
// the ones written after the backup included, and the restored data dir
// is kept aside in the undo's backup folder.
func TestDrillPowerLossDuringUndo(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 300, Lost: 30})
	sv := newSurvivor(t, s, nil, ignition.AfterPoweroff)
	oldData := disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.DataDir))

	// The restore runs on the host, as on a live master; the undo runs in
	// the rescue image, where the root is mounted elsewhere: the journal's
	// paths are the host's, and the undo maps them onto its root.
	out, err := exec.Command(lab.binary, "restore", "--root", s.Root, "--backup", s.BackupDir,
		"--name", s.Master.MemberName, "--initial-cluster", s.InitialCluster(),
		"--initial-cluster-token", "undo-powerloss").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "RESTORE-OK") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	restoredData := disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.DataDir))
	if restoredData == oldData {
		t.Fatal("the restore left the data dir as it was: undoing it would prove nothing")
	}
	undoer := *sv
	undoer.config = undoConfig(t, s)

	// The power goes as soon as the console says put-back started: the
	// moves it journals and makes are then in the guest's page cache. (A
	// cut at keep-restored-state lands before the undo journal reaches the
	// disk: the next boot starts afresh, which the SIGKILL tests cover.)
	const step = "put-back"
	rootDisk := sv.rootDisk(t)
	vm := undoer.boot(t, "undo-powerloss-boot-1", rootDisk)
	if _, err := vm.ExpectRE(regexp.MustCompile(`step \d+/\d+ `+step+`: started`), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	vm.Kill()
	if strings.Contains(vm.Console(), "UNDO-OK") {
		t.Fatalf("the undo ended before the power went: the cut at %s is not inside it", step)
	}
	recorded := onDisk(t, rootDisk, journal.Path("/", "undo"))
	t.Logf("power off when %q started; undo journal on the disk: %v", step, recorded)
	if !recorded {
		t.Errorf("no undo journal on the disk after the power loss at %s: the next boot has nothing to resume", step)
	}

	vm = undoer.boot(t, "undo-powerloss-boot-2", rootDisk)
	if _, err := vm.Expect("UNDO-OK", 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if resumed := strings.Contains(vm.Console(), "resuming undo run"); resumed != recorded {
		t.Errorf("undo journal on the disk %v, but the second boot resumed=%v", recorded, resumed)
	}
	if err := vm.Wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}

	got := dumpRoot(t, rootDisk)
	if h := disaster.TreeHash(t, filepath.Join(got, s.Profile.DataDir)); h != oldData {
		t.Errorf("the data dir on the disk after the undo differs from the one before the restore")
	}
	j, err := journal.Open(got, "undo", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if j.Finished == nil {
		t.Errorf("the undo journal on the disk does not record the run as finished")
	}
	kept := filepath.Join(j.BackupDir(got), s.Profile.DataDir)
	if h := disaster.TreeHash(t, kept); h != restoredData {
		t.Errorf("the restored data dir kept by the undo (%s) differs from the one the restore left", kept)
	}
	cli := startOldCluster(t, s, got)
	defer cli.Close()
	etcdtest.CheckKeys(t, cli, 0, s.Keys+s.Lost)
	resp, err := cli.Get(context.Background(), "health")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.ClusterId != s.ClusterID {
		t.Errorf("cluster ID %x, want the old cluster's %x", resp.Header.ClusterId, s.ClusterID)
	}
	t.Logf("after the power loss at %s: resumed, old data dir back byte for byte, old cluster %x serves %d keys, restored data dir kept at %s",
		step, s.ClusterID, s.Keys+s.Lost, strings.TrimPrefix(kept, got))
}

// undoConfig is the undo role's Ignition config for the scene's survivor.
func undoConfig(t *testing.T, s *disaster.Scene) string {
	t.Helper()
	m := plan.Member{Name: s.Master.MemberName, Host: s.Master.NodeName, PeerURL: s.Master.PeerURL()}
	pl := &plan.Plan{Version: plan.Version, Cluster: plan.Cluster{Name: "survivor", Domain: "test.example.com"},
		Profile: s.Profile.Name, Survivor: m.Name, Members: []plan.Member{m}}
	planBytes, err := pl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ignition.Build(ignition.Options{Plan: planBytes, Role: ignition.Role{Role: ignition.RoleUndo, Member: m.Name}})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), "undo.ign", cfg)
}

// startOldCluster starts the survivor from the manifest on root (read back
// from its disk) and the two lost members from their data dirs: the old
// three-member cluster.
func startOldCluster(t *testing.T, s *disaster.Scene, root string) *clientv3.Client {
	t.Helper()
	errs := make(chan error, len(s.OldMembers))
	for _, spec := range s.OldMembers {
		go func() {
			_, err := s.PKI.StartErr(t, spec)
			errs <- err
		}()
	}
	cli := s.StartFromManifest(t, root)
	for range s.OldMembers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return cli
}

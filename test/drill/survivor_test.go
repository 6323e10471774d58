package drill_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// survivor is a staged survivor alone in front of the rescue image: its
// backup on a volume of its own and the restore role's Ignition config.
// It needs no network: the plan gives the member no ip.
type survivor struct {
	scene      *disaster.Scene
	backupDisk string
	config     string
}

// newSurvivor writes the scene's backup onto an ext4 volume (each file
// through damage, when given) and the restore config, ending in after.
func newSurvivor(t *testing.T, s *disaster.Scene, damage func(file string, b []byte) []byte, after string) *survivor {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "backup-volume", "etcd")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{s.Backup.Snapshot, s.Backup.Resources} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if damage != nil {
			b = damage(f, b)
		}
		if err := os.WriteFile(filepath.Join(tree, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &survivor{
		scene:      s,
		backupDisk: qemu.Ext4Image(t, filepath.Join(dir, "backup.ext4"), filepath.Dir(tree), "backup", 64),
		config:     restoreConfig(t, s, "", after),
	}
}

// restoreConfig is the restore role's Ignition config for the scene's
// survivor, restoring from source (plan.SourceSurvivorData, or the backup
// when empty) and ending in after.
func restoreConfig(t *testing.T, s *disaster.Scene, source, after string) string {
	t.Helper()
	m := plan.Member{Name: s.Master.MemberName, Host: s.Master.NodeName, DNSName: s.Master.DNSName,
		PeerURL: s.Master.PeerURL(), ClientURL: s.Master.ClientURL()}
	pl := &plan.Plan{Version: plan.Version, Cluster: plan.Cluster{Name: "survivor", Domain: "test.example.com"},
		Profile: s.Profile.Name, Survivor: m.Name, Members: []plan.Member{m}, Source: source}
	planBytes, err := pl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ignition.Build(ignition.Options{Plan: planBytes, Role: ignition.Role{Role: ignition.RoleRestore, After: after}})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), "restore.ign", cfg)
}

// rootDisk is a fresh ext4 disk holding the survivor's root.
func (sv *survivor) rootDisk(t *testing.T) string {
	return qemu.Ext4Image(t, filepath.Join(t.TempDir(), "root.ext4"), sv.scene.Root, "master", 256)
}

// boot starts the rescue image on the survivor's root disk.
func (sv *survivor) boot(t *testing.T, name, rootDisk string) *qemu.VM {
	return qemu.Start(t, qemu.WithName(name), qemu.WithAccel(lab.accel), qemu.WithCPUs(1), qemu.WithMemory(768),
		qemu.WithTimeout(10*time.Minute),
		qemu.WithKernel(filepath.Join(lab.rescueDir, "vmlinuz"), filepath.Join(lab.rescueDir, "initrd.img"), lab.rescueCmdline),
		qemu.WithIgnition(sv.config),
		qemu.WithDisk(rootDisk, qemu.Disk{Serial: "master"}),
		qemu.WithDisk(sv.backupDisk, qemu.Disk{Serial: "backup"}))
}

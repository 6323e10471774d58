package boot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/ignition"
)

// TestBootLoadsDriversAndFilesystemOnDemand gives the fake machine a module
// index and a PCI virtio disk controller: coldplug loads its driver (and
// not the other carried one), and ext4's modules load before the first
// ext4 mount, its soft dependency first.
func TestBootLoadsDriversAndFilesystemOnDemand(t *testing.T) {
	f := newFake(t, "")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleVerify}))
	f.addDisk("vda", "backup", map[string]string{"etcd/snapshot_2024-01-01_000000.db": "x"})
	mods := filepath.Join(f.Root, "lib/modules/6.1.0-test")
	for name, body := range map[string]string{
		"modules.dep": "kernel/virtio_pci.ko:\nkernel/ahci.ko:\nkernel/crc32c_generic.ko:\n" +
			"kernel/jbd2.ko:\nkernel/ext4.ko: kernel/jbd2.ko\n",
		"modules.alias":   "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias pci:v*d*sv*sd*bc01sc06i01* ahci\nalias crypto-crc32c crc32c_generic\n",
		"modules.softdep": "softdep ext4 pre: crypto-crc32c\n",
	} {
		if err := os.MkdirAll(filepath.Join(mods, "kernel"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mods, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dev := filepath.Join(f.Root, "sys/devices/pci0000:00/0000:00:03.0")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"modalias": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "vendor": "0x1af4", "device": "0x1001", "class": "0x010000"} {
		if err := os.WriteFile(filepath.Join(dev, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(f.Root, "sys/bus/pci/devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, filepath.Join(f.Root, "sys/bus/pci/devices/0000:00:03.0")); err != nil {
		t.Fatal(err)
	}
	withRole(t, "verify", func(_ context.Context, env *Env) error {
		fmt.Fprintln(env.Console, "VERIFY-OK")
		return nil
	}, NeedsBackup())
	if err := f.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v\n%s", err, f.console.String())
	}
	var order []string
	for _, c := range f.calls {
		switch {
		case strings.HasPrefix(c, "insmod "):
			order = append(order, strings.TrimSuffix(filepath.Base(c), ".ko"))
		case strings.HasPrefix(c, "mount "):
			order = append(order, "mount")
		}
	}
	want := []string{"virtio_pci", "crc32c_generic", "jbd2", "ext4", "mount"}
	if len(order) < len(want) || !slices.Equal(order[:len(want)], want) {
		t.Errorf("loads and mounts in order %v, want %v first", order, want)
	}
	if slices.Contains(order, "ahci") {
		t.Errorf("ahci loaded with no AHCI controller: %v", order)
	}
	if !strings.Contains(f.console.String(), "coldplug: 1 modules loaded for 1 devices") {
		t.Errorf("console lacks the coldplug summary:\n%s", f.console.String())
	}
}

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
	writeIndex(t, f.Root)
	addPCI(t, f.Root, "0000:00:03.0", map[string]string{"modalias": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "vendor": "0x1af4", "device": "0x1001", "class": "0x010000"})
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

// TestBootNamesControllerWithoutDriver: a RAID controller no module
// matches, and so no disk: the failure says which controller has no
// driver instead of a bare "filesystems seen: none".
func TestBootNamesControllerWithoutDriver(t *testing.T) {
	f := newFake(t, "")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleVerify}))
	writeIndex(t, f.Root)
	addPCI(t, f.Root, "0000:00:05.0", map[string]string{"modalias": "pci:v00001000d00000073sv00001000sd00000000bc01sc04i00", "vendor": "0x1000", "device": "0x0073", "class": "0x010400"})
	withRole(t, "verify", func(context.Context, *Env) error { return nil }, NeedsRoot())
	err := f.Run(context.Background())
	want := "filesystems seen: none (no driver took the PCI controller(s) 0000:00:05.0 [1000:0073] (RAID bus controller): this image's kernel lacks it; see README 'Adding a driver')"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want one containing %q", err, want)
	}
	if !strings.Contains(f.console.String(), "coldplug: no driver for PCI device 0000:00:05.0 [1000:0073] (class 010400, RAID bus controller)") {
		t.Errorf("console lacks the no-driver line:\n%s", f.console.String())
	}
}

// writeIndex writes a small module index into the fake root's
// /lib/modules: virtio_pci, ahci, and ext4 with its dependencies.
func writeIndex(t *testing.T, root string) {
	t.Helper()
	mods := filepath.Join(root, "lib/modules/6.1.0-test")
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
}

// addPCI adds a PCI device with the given sysfs attributes to the fake root.
func addPCI(t *testing.T, root, slot string, attrs map[string]string) {
	t.Helper()
	dev := filepath.Join(root, "sys/devices/pci0000:00", slot)
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range attrs {
		if err := os.WriteFile(filepath.Join(dev, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "sys/bus/pci/devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, filepath.Join(root, "sys/bus/pci/devices", slot)); err != nil {
		t.Fatal(err)
	}
}

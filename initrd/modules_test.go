package initrd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testDep = `kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/fat/fat.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/drivers/firmware/qemu_fw_cfg.ko:
`

func testKmods(t *testing.T) *Kmods {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(testDep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := ReadKmods(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestResolveLoadsDependenciesFirst(t *testing.T) {
	k := testKmods(t)
	r := k.Resolve([]string{"virtio-pci", "virtio_blk", "vfat", "ext4", "ahci", "qemu_fw_cfg"})
	pos := map[string]int{}
	for i, p := range r.Load {
		if _, dup := pos[ModName(p)]; dup {
			t.Errorf("%s listed twice", p)
		}
		pos[ModName(p)] = i
	}
	for mod, deps := range map[string][]string{
		"virtio_pci": {"virtio", "virtio_ring", "virtio_pci_modern_dev"},
		"virtio":     {"virtio_ring"},
		"virtio_blk": {"virtio"},
		"vfat":       {"fat"},
	} {
		for _, d := range deps {
			if pos[d] >= pos[mod] {
				t.Errorf("%s (at %d) loads before its dependency %s (at %d): %v", mod, pos[mod], d, pos[d], r.Load)
			}
		}
	}
	if len(r.Load) != 8 {
		t.Errorf("load list %v, want the 8 modules", r.Load)
	}
	if strings.Join(r.Builtin, ",") != "ext4" || strings.Join(r.Missing, ",") != "ahci" {
		t.Errorf("builtin %v missing %v, want [ext4] [ahci]", r.Builtin, r.Missing)
	}
	again := k.Resolve([]string{"virtio-pci", "virtio_blk", "vfat", "ext4", "ahci", "qemu_fw_cfg"})
	if strings.Join(again.Load, " ") != strings.Join(r.Load, " ") {
		t.Errorf("order is not deterministic")
	}
}

func TestDepFileListsOnlyCarriedModules(t *testing.T) {
	k := testKmods(t)
	r := k.Resolve([]string{"vfat"})
	want := "kernel/fs/fat/fat.ko:\nkernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n"
	if got := k.DepFile(r.Load); got != want {
		t.Errorf("DepFile =\n%s\nwant\n%s", got, want)
	}
}

func TestReadKmodsWithoutDepmod(t *testing.T) {
	if _, err := ReadKmods(t.TempDir()); err == nil || !strings.Contains(err.Error(), "depmod") {
		t.Errorf("err = %v, want one that says to run depmod", err)
	}
}

func TestModName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/fat/vfat.ko":    "vfat",
		"virtio-pci":               "virtio_pci",
		"kernel/drivers/x/y.ko.xz": "y",
		"nvme":                     "nvme",
	} {
		if got := ModName(in); got != want {
			t.Errorf("ModName(%q) = %q, want %q", in, got, want)
		}
	}
}

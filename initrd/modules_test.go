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
kernel/crypto/crc32c_generic.ko:
kernel/fs/jbd2/jbd2.ko:
`

const testAlias = `# Aliases extracted from modules themselves.
alias virtio:d00000002v* virtio_blk
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias crypto-crc32c crc32c_generic
alias acpi*:QEMU0002:* qemu_fw_cfg
alias pci:v*d*sv*sd*bc01sc0[!6]i* ahci_unused
`

const testSoftdep = `# Soft dependencies extracted from modules themselves.
softdep jbd2 pre: crypto-crc32c
softdep vfat pre: nosuchmodule
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
	if err := os.WriteFile(filepath.Join(dir, "modules.alias"), []byte(testAlias), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.softdep"), []byte(testSoftdep), 0o644); err != nil {
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

func TestResolveLoadsSoftDependenciesByAlias(t *testing.T) {
	k := testKmods(t)
	r := k.Resolve([]string{"jbd2", "vfat"})
	want := "kernel/crypto/crc32c_generic.ko kernel/fs/jbd2/jbd2.ko kernel/fs/fat/fat.ko kernel/fs/fat/vfat.ko"
	if got := strings.Join(r.Load, " "); got != want {
		t.Errorf("load order %s, want %s (crc32c before jbd2; vfat's missing soft dependency skipped)", got, want)
	}
}

func TestMatchModalias(t *testing.T) {
	k := testKmods(t)
	for modalias, want := range map[string]string{
		"virtio:d00000002v00001AF4":                             "virtio_blk",
		"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00": "ahci_unused,virtio_pci",
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01": "",
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc04i01": "ahci_unused",
		"acpi:QEMU0002:":            "qemu_fw_cfg",
		"virtio:d00000001v00001AF4": "",
	} {
		if got := strings.Join(k.Match(modalias), ","); got != want {
			t.Errorf("Match(%s) = %q, want %q", modalias, got, want)
		}
	}
}

func TestTrimmedIndexFiles(t *testing.T) {
	k := testKmods(t)
	r := k.Resolve([]string{"virtio_blk", "jbd2"})
	if got, want := k.AliasFile(r.Load), "alias virtio:d00000002v* virtio_blk\nalias crypto-crc32c crc32c_generic\n"; got != want {
		t.Errorf("AliasFile =\n%s\nwant\n%s", got, want)
	}
	if got, want := k.SoftdepFile(r.Load), "softdep jbd2 pre: crypto-crc32c\n"; got != want {
		t.Errorf("SoftdepFile =\n%s\nwant\n%s", got, want)
	}
	// What the image carries reads back as the same index.
	dir := t.TempDir()
	for name, body := range map[string]string{
		"modules.dep": k.DepFile(r.Load), "modules.alias": k.AliasFile(r.Load),
		"modules.softdep": k.SoftdepFile(r.Load), "modules.builtin": k.BuiltinFile(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	again, err := ReadKmods(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(again.Resolve([]string{"jbd2", "ext4"}).Load, " "); got != "kernel/crypto/crc32c_generic.ko kernel/fs/jbd2/jbd2.ko" {
		t.Errorf("trimmed index resolves jbd2 to %s", got)
	}
	if !again.Builtin("ext4") || again.Has("vfat") {
		t.Errorf("trimmed index: ext4 built in %v, vfat carried %v", again.Builtin("ext4"), again.Has("vfat"))
	}
}

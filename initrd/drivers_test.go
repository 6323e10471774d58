package initrd

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// debianModules is the modules folder of the Debian kernel of a flavour
// that `make kernel` caches (generic or cloud).
func debianModules(t *testing.T, flavour string) string {
	t.Helper()
	root, err := FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob(filepath.Join(root, ".cache/kernel", flavour, "lib/modules/*"))
	if len(dirs) != 1 {
		t.Fatalf("no cached %s kernel under %s/.cache/kernel: run `make kernel`", flavour, root)
	}
	return dirs[0]
}

func TestGenericKernelHasEveryDriver(t *testing.T) {
	dir := debianModules(t, "generic")
	k, err := ReadKmods(dir)
	if err != nil {
		t.Fatal(err)
	}
	version := filepath.Base(dir)
	all := append(append(append([]string(nil), DriversFor(version)...), filesystemModules()...), OnDemandModules...)
	if err := checkPresent(k, version, all); err != nil {
		t.Fatal(err)
	}
	r := k.Resolve(all)
	if len(r.Missing) != 0 {
		t.Errorf("missing %v", r.Missing)
	}
	// ext4 on the generic kernel is a module that needs crc32c, named by
	// a soft dependency only.
	ext4 := strings.Join(k.Resolve(FilesystemModules["ext4"]).Load, " ")
	if !strings.Contains(ext4, "crc32c") {
		t.Errorf("ext4's modules %s lack its crc32c", ext4)
	}
	for modalias, want := range map[string]string{
		// QEMU q35's ICH9 AHCI controller.
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01": "ahci",
		// QEMU's e1000e (82574L).
		"pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00": "e1000e",
		// A USB stick (mass storage, SCSI, bulk-only).
		"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00": "usb_storage",
		// A SCSI disk.
		"scsi:t-0x00": "sd_mod",
	} {
		if got := k.Match(modalias); !slices.Contains(got, want) {
			t.Errorf("%s matches %v, want %s among them", modalias, got, want)
		}
	}
}

func TestCloudKernelSubset(t *testing.T) {
	dir := debianModules(t, "cloud")
	k, err := ReadKmods(dir)
	if err != nil {
		t.Fatal(err)
	}
	version := filepath.Base(dir)
	if !IsCloudKernel(version) {
		t.Fatalf("%s is not named as a cloud kernel", version)
	}
	if err := checkPresent(k, version, DriversFor(version)); err != nil {
		t.Errorf("the cloud subset: %v", err)
	}
	// Every driver CloudLacks names is really absent: the list is not
	// wider than it must be.
	for _, m := range CloudLacks {
		if k.Has(m) {
			t.Errorf("CloudLacks names %s, which the cloud kernel has", m)
		}
	}
	err = checkPresent(k, version, Drivers)
	if err == nil || !strings.Contains(err.Error(), "ahci") || !strings.Contains(err.Error(), "generic kernel") {
		t.Errorf("the full list on the cloud kernel: err = %v, want one naming ahci and the generic kernel", err)
	}
}

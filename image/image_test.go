package image

import (
	"bytes"
	"crypto/sha256"
	"debug/pe"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// fakeInputs are stand-ins: the stub does not care what its sections hold.
func fakeInputs(t *testing.T) Inputs {
	t.Helper()
	if _, err := os.Stat(DefaultStub); err != nil {
		t.Fatalf("%v: install Debian's systemd-boot-efi (make deps)", err)
	}
	if _, err := exec.LookPath(objcopy()); err != nil {
		t.Fatalf("objcopy not found: install binutils (make deps)")
	}
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	i := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(k, bytes.Repeat([]byte("K"), 300_000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(i, bytes.Repeat([]byte("I"), 200_001), 0o644); err != nil {
		t.Fatal(err)
	}
	return Inputs{Kernel: k, Initrd: i, Cmdline: "console=ttyS0 quiet", Version: "test"}
}

func sum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestUKISectionsAndReproducible(t *testing.T) {
	in := fakeInputs(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.efi"), filepath.Join(dir, "b.efi")
	if err := UKI(in, a); err != nil {
		t.Fatal(err)
	}
	if err := UKI(in, b); err != nil {
		t.Fatal(err)
	}
	if sum(t, a) != sum(t, b) {
		t.Error("two UKIs of the same inputs differ")
	}
	f, err := pe.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{".cmdline": in.Cmdline + "\x00", ".osrel": in.osRelease()}
	for name, content := range want {
		s := f.Section(name)
		if s == nil {
			t.Fatalf("no %s section", name)
		}
		data, err := io.ReadAll(io.LimitReader(s.Open(), int64(s.VirtualSize)))
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != content {
			t.Errorf("%s = %q, want %q", name, data, content)
		}
	}
	// Sections must not overlap in memory, or the stub reads garbage.
	var prevEnd uint32
	for _, s := range f.Sections {
		if s.VirtualAddress < prevEnd {
			t.Errorf("section %s at %#x overlaps the previous one (ends %#x)", s.Name, s.VirtualAddress, prevEnd)
		}
		prevEnd = s.VirtualAddress + s.VirtualSize
	}
	if s := f.Section(".linux"); s == nil || s.VirtualSize != 300_000 {
		t.Errorf(".linux section %+v, want the 300000-byte kernel", s)
	}
	raw, _ := os.ReadFile(a)
	peOff := int(raw[0x3c]) | int(raw[0x3d])<<8
	if got := peChecksum(raw, peOff+24+64); got != f.OptionalHeader.(*pe.OptionalHeader64).CheckSum {
		t.Errorf("PE checksum %#x, header says %#x", got, f.OptionalHeader.(*pe.OptionalHeader64).CheckSum)
	}
	if f.FileHeader.TimeDateStamp != 0 {
		t.Errorf("PE timestamp %d, want 0", f.FileHeader.TimeDateStamp)
	}
}

func TestRawImageHoldsUKIOnESP(t *testing.T) {
	in := fakeInputs(t)
	dir := t.TempDir()
	outs, err := Build(in, "raw", dir)
	if err != nil {
		t.Fatal(err)
	}
	p := outs[0].Path
	first := sum(t, p)
	if _, err := Build(in, "raw", dir); err != nil {
		t.Fatal(err)
	}
	if sum(t, p) != first {
		t.Error("two raw images of the same inputs differ")
	}
	d, err := diskfs.Open(p, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	table, ok := pt.(*gpt.Table)
	if !ok || len(table.Partitions) != 1 || table.Partitions[0].Type != gpt.EFISystemPartition {
		t.Fatalf("partition table %+v, want GPT with one EFI system partition", pt)
	}
	fs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.OpenFile(BootPath, os.O_RDONLY)
	if err != nil {
		t.Fatalf("ESP has no %s: %v", BootPath, err)
	}
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	uki := filepath.Join(t.TempDir(), "uki.efi")
	if err := UKI(in, uki); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(uki)
	if !bytes.Equal(got, want) {
		t.Errorf("%s on the ESP (%d bytes) is not the UKI (%d bytes)", BootPath, len(got), len(want))
	}
}

func TestISOReproducibleWithEFIImage(t *testing.T) {
	in := fakeInputs(t)
	a, b := filepath.Join(t.TempDir(), "a.iso"), filepath.Join(t.TempDir(), "b.iso")
	if err := ISO(in, a); err != nil {
		t.Fatal(err)
	}
	if err := ISO(in, b); err != nil {
		t.Fatal(err)
	}
	if sum(t, a) != sum(t, b) {
		t.Error("two ISOs of the same inputs differ")
	}
	d, err := diskfs.Open(a, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(0)
	if err != nil {
		t.Fatal(err)
	}
	// Plain ISO 9660 (no Rock Ridge, no Joliet): names are upper case.
	for _, p := range []string{efiImage, "/vmlinuz", "/initrd.img", "/isolinux/isolinux.bin", "/isolinux/ldlinux.c32", "/isolinux/isolinux.cfg"} {
		if _, err := fs.OpenFile(strings.ToUpper(p), os.O_RDONLY); err != nil {
			t.Errorf("ISO has no %s: %v", p, err)
		}
	}
	raw, _ := os.ReadFile(a)
	if !bytes.Contains(raw[17*isoBlock:18*isoBlock], []byte("EL TORITO SPECIFICATION")) {
		t.Error("no El Torito boot record volume descriptor")
	}
}

func TestPXEAndUnknownFormat(t *testing.T) {
	in := fakeInputs(t)
	dir := t.TempDir()
	outs, err := Build(in, "pxe", dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 3 {
		t.Fatalf("pxe wrote %v", outs)
	}
	c, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	if string(c) != in.Cmdline+"\n" {
		t.Errorf("cmdline = %q", c)
	}
	if _, err := Build(in, "floppy", dir); err == nil {
		t.Error("unknown format accepted")
	}
}

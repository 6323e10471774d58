package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/vm"
)

func TestCmdline(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "a b.img")
	ign := filepath.Join(dir, "c.ign")
	for _, p := range []string{disk, ign} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := &Options{QEMU: "qemu-system-x86_64", Accel: "tcg", Memory: 512, CPUs: 1}
	for _, f := range []Option{
		WithDisk(disk, Disk{Snapshot: true, Serial: "s1", Boot: true}),
		WithIgnition(ign),
		WithArgs("-rtc", "base=utc"),
	} {
		if err := f(o); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(o.Cmdline(), " ")
	for _, want := range []string{
		"-accel tcg -m 512 -smp 1",
		"-drive file=" + disk + ",format=raw,if=none,id=disk0,snapshot=on -device virtio-blk-pci,drive=disk0,serial=s1,bootindex=0",
		"-fw_cfg name=opt/com.coreos/config,file=" + ign,
		"-nic none -rtc base=utc",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("command line lacks %q:\n%s", want, got)
		}
	}
	// A controller given with WithDevices comes before the disk on it.
	o2 := &Options{QEMU: "qemu-system-x86_64", Accel: "tcg", Memory: 512, CPUs: 1}
	for _, f := range []Option{WithDevices("-device", "megasas-gen2,id=hba"), WithDisk(disk, Disk{Device: "scsi-hd,bus=hba.0"})} {
		if err := f(o2); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(o2.Cmdline(), " "), "-device megasas-gen2,id=hba -drive file="+disk+",format=raw,if=none,id=disk0 -device scsi-hd,bus=hba.0,drive=disk0"; !strings.Contains(got, want) {
		t.Errorf("command line lacks %q:\n%s", want, got)
	}
	if q := vm.ShellQuote([]string{"qemu", "-append", "console=ttyS0 quiet", disk}); q != "qemu -append 'console=ttyS0 quiet' '"+disk+"'" {
		t.Errorf("ShellQuote = %s", q)
	}
	if err := WithDisk(filepath.Join(dir, "missing"), Disk{})(o); err == nil {
		t.Error("a missing disk image was accepted")
	}
}

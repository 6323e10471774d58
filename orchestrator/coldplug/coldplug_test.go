package coldplug

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/initrd"
)

// genericIndex is the module index of Debian's generic kernel that `make
// kernel` caches: real modules.alias, modules.dep and modules.softdep.
func genericIndex(t *testing.T) *initrd.Kmods {
	t.Helper()
	root, err := initrd.FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob(filepath.Join(root, ".cache/kernel/generic/lib/modules/*"))
	if len(dirs) != 1 {
		t.Fatalf("no cached generic kernel under %s/.cache/kernel: run `make kernel`", root)
	}
	k, err := initrd.ReadKmods(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fakeSys is a /sys tree: devices live under sys/devices and are linked
// from sys/bus/<bus>/devices, as the kernel lays them out.
type fakeSys struct {
	t    *testing.T
	root string

	mu     sync.Mutex
	loads  []string // module names, in load order
	params map[string]string
	// onLoad binds drivers and adds the devices a module's load makes
	// appear (after a delay, as a USB or SCSI scan does).
	onLoad map[string]func()
}

func newFakeSys(t *testing.T) *fakeSys {
	return &fakeSys{t: t, root: t.TempDir(), params: map[string]string{}, onLoad: map[string]func(){}}
}

// add makes a device with the given attributes and returns its folder.
func (f *fakeSys) add(bus, name, devPath string, attrs map[string]string) string {
	f.t.Helper()
	dir := filepath.Join(f.root, "sys/devices", devPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	for k, v := range attrs {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	link := filepath.Join(f.root, "sys/bus", bus, "devices", name)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(dir, link); err != nil {
		f.t.Fatal(err)
	}
	return dir
}

// bind links dev to a driver, as a probe does.
func (f *fakeSys) bind(dev, bus, driver string) {
	drv := filepath.Join(f.root, "sys/bus", bus, "drivers", driver)
	if err := os.MkdirAll(drv, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(drv, filepath.Join(dev, "driver")); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSys) load(path, params string) error {
	name := initrd.ModName(path)
	f.mu.Lock()
	f.loads = append(f.loads, name)
	f.params[name] = params
	hook := f.onLoad[name]
	f.mu.Unlock()
	if _, err := os.Stat(path); err != nil {
		return err
	}
	if hook != nil {
		hook()
	}
	return nil
}

func (f *fakeSys) loaded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.loads...)
}

// TestColdplugQ35 is a q35 machine with AHCI, an e1000e, a virtio disk, a
// USB stick behind xhci and a RAID controller no driver knows. Only the
// drivers of the devices present load, dependencies first; the USB stick
// and the SCSI disks appear only after their controllers' drivers load and
// still get theirs; the unknown RAID controller is a clear console line.
func TestColdplugQ35(t *testing.T) {
	k := genericIndex(t)
	f := newFakeSys(t)
	pci := func(slot, vendor, device, class, modalias string) string {
		return f.add("pci", slot, "pci0000:00/"+slot, map[string]string{
			"vendor": "0x" + vendor, "device": "0x" + device, "class": "0x" + class, "modalias": modalias,
		})
	}
	pci("0000:00:00.0", "8086", "29c0", "060000", "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00")
	ahci := pci("0000:00:1f.2", "8086", "2922", "010601", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01")
	nic := pci("0000:00:02.0", "8086", "10d3", "020000", "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00")
	virtio := pci("0000:00:03.0", "1af4", "1001", "010000", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00")
	xhci := pci("0000:00:04.0", "1b36", "000d", "0c0330", "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30")
	pci("0000:00:05.0", "1234", "5678", "010400", "pci:v00001234d00005678sv00000000sd00000000bc01sc04i00")

	later := func(d time.Duration, fn func()) { time.AfterFunc(d, fn) }
	disk := func(host string) {
		dev := f.add("scsi", host+":0:0:0", "scsi/"+host+":0:0:0", map[string]string{
			"modalias": "scsi:t-0x00", "type": "0", "vendor": "ATA", "model": "QEMU HARDDISK",
		})
		// sd binds every SCSI disk once loaded.
		f.mu.Lock()
		bound := slices.Contains(f.loads, "sd_mod")
		f.mu.Unlock()
		if bound {
			f.bind(dev, "scsi", "sd")
			return
		}
		f.onLoad["sd_mod"] = func() { f.bind(dev, "scsi", "sd") }
	}
	f.onLoad["ahci"] = func() {
		f.bind(ahci, "pci", "ahci")
		later(100*time.Millisecond, func() { disk("0") })
	}
	f.onLoad["e1000e"] = func() { f.bind(nic, "pci", "e1000e") }
	f.onLoad["virtio_pci"] = func() {
		f.bind(virtio, "pci", "virtio-pci")
		f.add("virtio", "virtio0", "pci0000:00/0000:00:03.0/virtio0", map[string]string{"modalias": "virtio:d00000002v00001AF4"})
	}
	f.onLoad["virtio_blk"] = func() {
		f.bind(filepath.Join(f.root, "sys/devices/pci0000:00/0000:00:03.0/virtio0"), "virtio", "virtio_blk")
	}
	f.onLoad["xhci_pci"] = func() {
		f.bind(xhci, "pci", "xhci_hcd")
		later(200*time.Millisecond, func() {
			usbDev := f.add("usb", "1-1", "pci0000:00/0000:00:04.0/usb1/1-1", map[string]string{"idVendor": "46f4", "idProduct": "0001"})
			_ = usbDev
			intf := f.add("usb", "1-1:1.0", "pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0", map[string]string{
				"modalias": "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", "bInterfaceClass": "08",
			})
			f.onLoad["usb_storage"] = func() {
				f.bind(intf, "usb", "usb-storage")
				later(100*time.Millisecond, func() { disk("6") })
			}
		})
	}

	var console strings.Builder
	l := &Loader{Root: f.root, Index: k, Load: f.load, Console: &console, Settle: 400 * time.Millisecond}
	res := l.Run(context.Background(), 10*time.Second)
	out := console.String()
	t.Logf("console:\n%s", out)
	loads := f.loaded()

	for _, want := range []string{"ahci", "e1000e", "virtio_pci", "virtio_blk", "xhci_pci", "usb_storage", "sd_mod"} {
		if !slices.Contains(loads, want) {
			t.Errorf("%s not loaded: %v", want, loads)
		}
	}
	for _, unwanted := range []string{"megaraid_sas", "mpt3sas", "igb", "ixgbe", "nvme", "hpsa", "uas_unused"} {
		if slices.Contains(loads, unwanted) {
			t.Errorf("%s loaded for hardware that is not there: %v", unwanted, loads)
		}
	}
	at := func(m string) int { return slices.Index(loads, m) }
	for mod, dep := range map[string]string{"ahci": "libata", "sd_mod": "scsi_mod", "usb_storage": "usbcore", "virtio_blk": "virtio"} {
		if at(dep) < 0 || at(dep) > at(mod) {
			t.Errorf("%s (at %d) loaded before its dependency %s (at %d)", mod, at(mod), dep, at(dep))
		}
	}
	times := map[string]int{}
	for _, m := range loads {
		if times[m]++; times[m] == 2 {
			t.Errorf("%s loaded twice", m)
		}
	}
	if f.params["usb_storage"] != "delay_use=0" {
		t.Errorf("usb_storage loaded with %q, want delay_use=0", f.params["usb_storage"])
	}
	for _, want := range []string{
		"pci 0000:00:1f.2 [8086:2922] SATA controller → ahci\n",
		"pci 0000:00:02.0 [8086:10d3] Ethernet controller → e1000e\n",
		"pci 0000:00:04.0 [1b36:000d] USB controller → xhci_hcd\n",
		"usb 1-1:1.0 [46f4:0001] mass storage → usb-storage\n",
		"scsi 6:0:0:0 disk ATA QEMU HARDDISK → sd\n",
		"virtio virtio0 → virtio_blk\n",
		"coldplug: no driver for PCI device 0000:00:05.0 [1234:5678] (class 010400, RAID bus controller): this kernel lacks it; see README 'Adding a driver'\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if strings.Contains(out, "0000:00:00.0") {
		t.Errorf("a host bridge without a driver was reported")
	}
	if len(res.Unbound) != 1 || res.Unbound[0] != "0000:00:05.0" {
		t.Errorf("unbound = %v, want the RAID controller", res.Unbound)
	}
	if u := l.Unbound(); len(u) != 1 || u[0] != "0000:00:05.0 [1234:5678] (RAID bus controller)" {
		t.Errorf("Unbound() = %q", u)
	}
}

// TestColdplugLoadFailure: a driver that fails to load is a console line
// naming it, and its device is reported as not taken.
func TestColdplugLoadFailure(t *testing.T) {
	k := genericIndex(t)
	f := newFakeSys(t)
	f.add("pci", "0000:00:1f.2", "pci0000:00/0000:00:1f.2", map[string]string{
		"vendor": "0x8086", "device": "0x2922", "class": "0x010601",
		"modalias": "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
	})
	var console strings.Builder
	l := &Loader{Root: f.root, Index: k, Console: &console, Settle: 50 * time.Millisecond,
		Load: func(path, params string) error {
			if initrd.ModName(path) == "ahci" {
				return os.ErrInvalid
			}
			return nil
		}}
	l.Run(context.Background(), 5*time.Second)
	out := console.String()
	for _, want := range []string{
		"coldplug: load ahci: invalid argument",
		"coldplug: PCI device 0000:00:1f.2 [8086:2922] (class 010601, SATA controller) was not taken by ahci, which matched it",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
}

// TestLoadModulesSkipsCPUVariants: crc32c-intel finds no SSE4.2 under
// emulation (ENODEV); ext4 and then xfs, which both want a crc32c, still
// load, and the failure is not a console line.
func TestLoadModulesSkipsCPUVariants(t *testing.T) {
	k := genericIndex(t)
	var console strings.Builder
	var loads []string
	l := &Loader{Root: t.TempDir(), Index: k, Console: &console, Load: func(path, params string) error {
		loads = append(loads, initrd.ModName(path))
		if initrd.ModName(path) == "crc32c_intel" {
			return syscall.ENODEV
		}
		return nil
	}}
	for _, fs := range []string{"ext4", "xfs"} {
		if err := l.LoadModules(fs); err != nil {
			t.Errorf("load %s: %v", fs, err)
		}
	}
	if !slices.Contains(loads, "crc32c_intel") || !slices.Contains(loads, "crc32c_generic") || !slices.Contains(loads, "xfs") {
		t.Errorf("loads %v, want crc32c_intel tried, crc32c_generic and xfs loaded", loads)
	}
	if console.Len() != 0 {
		t.Errorf("console: %s", console.String())
	}
}

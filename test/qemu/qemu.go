// Package qemu starts QEMU virtual machines for tests, in the style of
// hugelgupf/vmtest, on top of the lab's runner (package lab/vm): functional
// options build the command line, which is logged so a failure can be
// reproduced by hand; the serial console is copied to t.Logf with
// timestamps relative to the VM's start and kept in a buffer that Expect
// waits on; the VM is killed by its PID when the test ends, and on failure
// the serial log is written to the test output folder.
//
// Defaults: qemu-system-x86_64, 1 GiB, 1 CPU (2 with KVM), TCG unless WithAccel or
// ETCD_RESCUE_ACCEL says otherwise (DetectAccel finds out whether KVM really
// runs a guest), no network (-nic none), -no-reboot so a guest reboot or
// power-off ends QEMU.
package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/vm"
)

// Environment variables the harness reads.
const (
	// EnvQEMU overrides the QEMU binary.
	EnvQEMU = "ETCD_RESCUE_QEMU"
	// EnvAccel forces the accelerator: kvm or tcg.
	EnvAccel = "ETCD_RESCUE_ACCEL"
	// EnvOVMF overrides the UEFI firmware image.
	EnvOVMF = "ETCD_RESCUE_OVMF"
	// EnvTestOutput is where serial logs of failed tests go.
	EnvTestOutput = "ETCD_RESCUE_TEST_OUTPUT"
)

// DefaultOVMF is Debian's OVMF image (package ovmf), usable with -bios.
const DefaultOVMF = "/usr/share/ovmf/OVMF.fd"

// IgnitionFwCfg is the fw_cfg name CoreOS and the rescue image read the
// Ignition config from.
const IgnitionFwCfg = "opt/com.coreos/config"

// Options describe a VM. Build them with Option functions.
type Options struct {
	Name    string
	QEMU    string
	Accel   string
	Memory  int // MiB
	CPUs    int
	Kernel  string
	Initrd  string
	Append  string
	BIOS    string
	Timeout time.Duration
	// Devices are QEMU arguments for disks, CD-ROMs and fw_cfg entries, in
	// the order they were added.
	Devices []string
	// Network replaces the default -nic none.
	Network []string
	Extra   []string
	drives  int
}

// Option changes Options.
type Option func(*Options) error

// WithName names the VM in logs and artifacts.
func WithName(n string) Option { return func(o *Options) error { o.Name = n; return nil } }

// WithKernel boots kernel and initrd directly (PXE-like), with cmdline.
func WithKernel(kernel, initrd, cmdline string) Option {
	return func(o *Options) error {
		for _, p := range []string{kernel, initrd} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("kernel boot: %w", err)
			}
		}
		o.Kernel, o.Initrd, o.Append = kernel, initrd, cmdline
		return nil
	}
}

// WithUEFI boots with OVMF (DefaultOVMF or $ETCD_RESCUE_OVMF).
func WithUEFI() Option {
	return func(o *Options) error {
		fw := os.Getenv(EnvOVMF)
		if fw == "" {
			fw = DefaultOVMF
		}
		if _, err := os.Stat(fw); err != nil {
			return fmt.Errorf("UEFI firmware: %w (install Debian's ovmf: make deps, or set %s)", err, EnvOVMF)
		}
		o.BIOS = fw
		return nil
	}
}

// Disk says how a disk image is attached.
type Disk struct {
	// Format is the image format; default raw.
	Format string
	// ReadOnly attaches it read-only.
	ReadOnly bool
	// Snapshot discards the guest's writes when QEMU exits.
	Snapshot bool
	// Serial is the disk's serial number (/dev/disk/by-id).
	Serial string
	// Boot makes it the first boot device (bootindex=0).
	Boot bool
	// Device is the QEMU device that attaches it, with its options
	// ("scsi-hd,bus=hba.0,scsi-id=1", "ide-hd,bus=ide.0", "nvme,serial=n0",
	// "usb-storage,bus=xhci.0"); drive= is added. Default virtio-blk-pci.
	Device string
}

// WithDisk attaches a disk (virtio-blk unless d.Device says otherwise).
func WithDisk(path string, d Disk) Option {
	return func(o *Options) error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("disk: %w", err)
		}
		if d.Format == "" {
			d.Format = "raw"
		}
		id := fmt.Sprintf("disk%d", o.drives)
		o.drives++
		drive := fmt.Sprintf("file=%s,format=%s,if=none,id=%s", path, d.Format, id)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		if d.Snapshot {
			drive += ",snapshot=on"
		}
		dev := "virtio-blk-pci,drive=" + id
		if d.Device != "" {
			dev = d.Device + ",drive=" + id
		}
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		if d.Boot {
			dev += ",bootindex=0"
		}
		o.Devices = append(o.Devices, "-drive", drive, "-device", dev)
		return nil
	}
}

// WithCDROM attaches an ISO image as an IDE CD-ROM, first in boot order.
func WithCDROM(path string) Option {
	return func(o *Options) error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("cdrom: %w", err)
		}
		id := fmt.Sprintf("cd%d", o.drives)
		o.drives++
		o.Devices = append(o.Devices,
			"-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=%s,media=cdrom,readonly=on", path, id),
			"-device", "ide-cd,drive="+id+",bootindex=0")
		return nil
	}
}

// WithDevices adds QEMU arguments among the disks, in order: a storage
// controller must come before the disks attached to it.
func WithDevices(a ...string) Option {
	return func(o *Options) error { o.Devices = append(o.Devices, a...); return nil }
}

// WithFwCfg passes file to the guest as fw_cfg entry name.
func WithFwCfg(name, file string) Option {
	return func(o *Options) error {
		if _, err := os.Stat(file); err != nil {
			return fmt.Errorf("fw_cfg %s: %w", name, err)
		}
		o.Devices = append(o.Devices, "-fw_cfg", fmt.Sprintf("name=%s,file=%s", name, file))
		return nil
	}
}

// WithIgnition passes an Ignition config the way CoreOS reads it in QEMU.
func WithIgnition(file string) Option { return WithFwCfg(IgnitionFwCfg, file) }

// WithNetwork replaces -nic none with the given QEMU network arguments
// (for example a tap device in a network namespace the test created).
func WithNetwork(args ...string) Option {
	return func(o *Options) error { o.Network = args; return nil }
}

// WithMemory sets the guest memory in MiB.
func WithMemory(mib int) Option { return func(o *Options) error { o.Memory = mib; return nil } }

// WithCPUs sets the number of guest CPUs.
func WithCPUs(n int) Option { return func(o *Options) error { o.CPUs = n; return nil } }

// WithAccel sets the accelerator (kvm or tcg).
func WithAccel(a string) Option { return func(o *Options) error { o.Accel = a; return nil } }

// WithTimeout kills the VM after d.
func WithTimeout(d time.Duration) Option { return func(o *Options) error { o.Timeout = d; return nil } }

// WithArgs appends raw QEMU arguments.
func WithArgs(a ...string) Option {
	return func(o *Options) error { o.Extra = append(o.Extra, a...); return nil }
}

// Cmdline returns the QEMU command line.
func (o *Options) Cmdline() []string {
	args := vm.Machine(o.QEMU, o.Accel, o.Memory, o.CPUs)
	if o.BIOS != "" {
		args = append(args, "-bios", o.BIOS)
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel, "-initrd", o.Initrd, "-append", o.Append)
	}
	args = append(args, o.Devices...)
	args = append(args, vm.NetworkArgs(o.Network)...)
	return append(args, o.Extra...)
}

// VM is a running QEMU (package lab/vm runs it) tied to a test.
type VM struct {
	*vm.VM
	Options *Options
	t       testing.TB
}

// Start starts a VM for the test. The test fails if QEMU cannot start.
func Start(t testing.TB, opts ...Option) *VM {
	t.Helper()
	vm, err := StartErr(t, opts...)
	if err != nil {
		t.Fatalf("start VM: %v", err)
	}
	return vm
}

// StartErr starts a VM and returns an error instead of failing the test.
func StartErr(t testing.TB, opts ...Option) (*VM, error) {
	o := &Options{Name: "vm", QEMU: "qemu-system-x86_64", Memory: 1024, Timeout: 5 * time.Minute, Accel: os.Getenv(EnvAccel)}
	if q := os.Getenv(EnvQEMU); q != "" {
		o.QEMU = q
	}
	for _, f := range opts {
		if err := f(o); err != nil {
			return nil, err
		}
	}
	if o.Accel == "" {
		o.Accel = "tcg"
	}
	if o.CPUs == 0 {
		// One vCPU under TCG: the host's two cores are shared with the
		// other VMs and tests, and a single vCPU avoids multi-threaded
		// TCG's timing races on the emulated UART.
		o.CPUs = 1
		if o.Accel == "kvm" {
			o.CPUs = 2
		}
	}
	if _, err := exec.LookPath(o.QEMU); err != nil {
		return nil, fmt.Errorf("%s not found: install Debian's qemu-system-x86 (make deps) or set %s", o.QEMU, EnvQEMU)
	}
	v, err := vm.Run(o.Name, o.Cmdline(), o.Timeout, t.Logf)
	if err != nil {
		return nil, err
	}
	w := &VM{VM: v, Options: o, t: t}
	t.Cleanup(func() {
		w.Kill()
		if t.Failed() {
			w.writeArtifact()
		}
	})
	return w, nil
}

// writeArtifact keeps the serial log of a failed test.
func (v *VM) writeArtifact() {
	dir := OutputDir(v.t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		v.t.Logf("serial log artifact: %v", err)
		return
	}
	p := filepath.Join(dir, v.Name+".serial.log")
	body := "# " + vm.ShellQuote(v.Options.Cmdline()) + "\n" + ansi.ReplaceAllString(v.Console(), "")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		v.t.Logf("serial log artifact: %v", err)
		return
	}
	v.t.Logf("%s: serial log kept in %s", v.Name, p)
}

// ansi matches terminal escapes, removed from kept serial logs.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]|\x1bc|\r`)

// OutputDir is the test's artifact folder: $ETCD_RESCUE_TEST_OUTPUT (default
// test-output under the system temp folder) / the test's name.
func OutputDir(t testing.TB) string {
	base := os.Getenv(EnvTestOutput)
	if base == "" {
		base = filepath.Join(os.TempDir(), "etcd-rescue-test-output")
	}
	return filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
}

// Package qemu starts QEMU virtual machines for tests, in the style of
// hugelgupf/vmtest: functional options build the command line, which is
// logged so a failure can be reproduced by hand; the serial console is
// copied to t.Logf with timestamps relative to the VM's start and kept in a
// buffer that Expect waits on; the VM is killed by its PID when the test
// ends, and on failure the serial log is written to the test output folder.
//
// Defaults: qemu-system-x86_64, 1 GiB, 1 CPU (2 with KVM), TCG unless WithAccel or
// ETCD_RESCUE_ACCEL says otherwise (DetectAccel finds out whether KVM really
// runs a guest), no network (-nic none), -no-reboot so a guest reboot or
// power-off ends QEMU.
package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
}

// WithDisk attaches a virtio-blk disk.
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
	args := []string{o.QEMU,
		"-machine", "q35", "-accel", o.Accel,
		"-m", fmt.Sprint(o.Memory), "-smp", fmt.Sprint(o.CPUs),
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
	}
	if o.BIOS != "" {
		args = append(args, "-bios", o.BIOS)
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel, "-initrd", o.Initrd, "-append", o.Append)
	}
	args = append(args, o.Devices...)
	if len(o.Network) > 0 {
		args = append(args, o.Network...)
	} else {
		args = append(args, "-nic", "none")
	}
	return append(args, o.Extra...)
}

// VM is a running QEMU.
type VM struct {
	Name    string
	Options *Options
	// Started is when QEMU was started; console times are relative to it.
	Started time.Time

	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	mu     sync.Mutex
	buf    bytes.Buffer
	cursor int
	update chan struct{}
	lines  []string
	logged int
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
	args := o.Cmdline()
	t.Logf("%s: QEMU command line (to reproduce):\n%s", o.Name, shellQuote(args))

	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	vm := &VM{Name: o.Name, Options: o, t: t, cmd: cmd, cancel: cancel, done: make(chan struct{}), update: make(chan struct{})}
	cmd.Stdout = (*consoleWriter)(vm)
	cmd.Stderr = (*consoleWriter)(vm)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	vm.stdin = stdin
	// Its own process group, so the kill reaches nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	vm.Started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", o.QEMU, err)
	}
	go func() {
		vm.err = cmd.Wait()
		vm.flush()
		close(vm.done)
		vm.notify()
	}()
	t.Cleanup(func() {
		vm.Kill()
		if t.Failed() {
			vm.writeArtifact()
		}
	})
	return vm, nil
}

// Send types s on the serial console (add "\n" to run a command).
func (vm *VM) Send(s string) error {
	_, err := io.WriteString(vm.stdin, s)
	return err
}

// Kill ends QEMU (by its PID) and waits for it.
func (vm *VM) Kill() {
	select {
	case <-vm.done:
	default:
		if vm.cmd.Process != nil {
			_ = vm.cmd.Process.Kill()
		}
		<-vm.done
	}
	vm.cancel()
}

// Wait waits for QEMU to exit by itself (the guest powered off) for at most
// timeout, then kills it.
func (vm *VM) Wait(timeout time.Duration) error {
	select {
	case <-vm.done:
		if vm.err != nil {
			return fmt.Errorf("%s: qemu: %v", vm.Name, vm.err)
		}
		return nil
	case <-time.After(timeout):
		vm.Kill()
		return fmt.Errorf("%s: still running after %s: killed", vm.Name, timeout)
	}
}

// Expect waits until the console shows s after the previous match, and
// returns how long after the VM's start it appeared.
func (vm *VM) Expect(s string, timeout time.Duration) (time.Duration, error) {
	return vm.expect(func(b []byte) (int, int) {
		i := bytes.Index(b, []byte(s))
		return i, len(s)
	}, fmt.Sprintf("%q", s), timeout)
}

// ExpectRE waits for a regular expression and returns the match.
func (vm *VM) ExpectRE(re *regexp.Regexp, timeout time.Duration) (string, error) {
	var m string
	_, err := vm.expect(func(b []byte) (int, int) {
		loc := re.FindIndex(b)
		if loc == nil {
			return -1, 0
		}
		m = string(b[loc[0]:loc[1]])
		return loc[0], loc[1] - loc[0]
	}, re.String(), timeout)
	return m, err
}

func (vm *VM) expect(find func([]byte) (int, int), what string, timeout time.Duration) (time.Duration, error) {
	deadline := time.After(timeout)
	for {
		vm.mu.Lock()
		rest := vm.buf.Bytes()[vm.cursor:]
		if i, n := find(rest); i >= 0 {
			vm.cursor += i + n
			vm.mu.Unlock()
			return time.Since(vm.Started), nil
		}
		update := vm.update
		vm.mu.Unlock()
		select {
		case <-update:
		case <-vm.done:
			// One more look at what arrived before the exit.
			vm.mu.Lock()
			rest := vm.buf.Bytes()[vm.cursor:]
			i, n := find(rest)
			if i >= 0 {
				vm.cursor += i + n
			}
			vm.mu.Unlock()
			if i >= 0 {
				return time.Since(vm.Started), nil
			}
			return 0, fmt.Errorf("%s: exited (%v) before the console showed %s; last lines:\n%s", vm.Name, vm.err, what, vm.tail(15))
		case <-deadline:
			return 0, fmt.Errorf("%s: console did not show %s within %s; last lines:\n%s", vm.Name, what, timeout, vm.tail(15))
		}
	}
}

// Console returns everything the serial console printed so far.
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.buf.String()
}

func (vm *VM) tail(n int) string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	l := vm.lines
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// consoleWriter receives QEMU's stdout and stderr.
type consoleWriter VM

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]|\x1bc|\r`)

func (w *consoleWriter) Write(p []byte) (int, error) {
	vm := (*VM)(w)
	vm.mu.Lock()
	vm.buf.Write(p)
	// Log complete lines only; the rest waits for its newline.
	pending := vm.buf.Bytes()[vm.lastLineEnd():]
	var done []string
	for {
		i := bytes.IndexByte(pending, '\n')
		if i < 0 {
			break
		}
		done = append(done, ansi.ReplaceAllString(string(pending[:i]), ""))
		pending = pending[i+1:]
	}
	vm.logged = vm.buf.Len() - len(pending)
	vm.lines = append(vm.lines, done...)
	vm.mu.Unlock()
	for _, l := range done {
		vm.t.Logf("[%6.2fs] %s: %s", time.Since(vm.Started).Seconds(), vm.Name, l)
	}
	vm.notify()
	return len(p), nil
}

func (vm *VM) lastLineEnd() int { return vm.logged }

// flush logs a last line that had no newline.
func (vm *VM) flush() {
	vm.mu.Lock()
	rest := ansi.ReplaceAllString(string(vm.buf.Bytes()[vm.logged:]), "")
	vm.logged = vm.buf.Len()
	if strings.TrimSpace(rest) != "" {
		vm.lines = append(vm.lines, rest)
	}
	vm.mu.Unlock()
	if strings.TrimSpace(rest) != "" {
		vm.t.Logf("[%6.2fs] %s: %s", time.Since(vm.Started).Seconds(), vm.Name, rest)
	}
}

func (vm *VM) notify() {
	vm.mu.Lock()
	close(vm.update)
	vm.update = make(chan struct{})
	vm.mu.Unlock()
}

// writeArtifact keeps the serial log of a failed test.
func (vm *VM) writeArtifact() {
	dir := OutputDir(vm.t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		vm.t.Logf("serial log artifact: %v", err)
		return
	}
	p := filepath.Join(dir, vm.Name+".serial.log")
	body := "# " + shellQuote(vm.Options.Cmdline()) + "\n" + ansi.ReplaceAllString(vm.Console(), "")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		vm.t.Logf("serial log artifact: %v", err)
		return
	}
	vm.t.Logf("%s: serial log kept in %s", vm.Name, p)
}

// OutputDir is the test's artifact folder: $ETCD_RESCUE_TEST_OUTPUT (default
// test-output under the system temp folder) / the test's name.
func OutputDir(t testing.TB) string {
	base := os.Getenv(EnvTestOutput)
	if base == "" {
		base = filepath.Join(os.TempDir(), "etcd-rescue-test-output")
	}
	return filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
}

func shellQuote(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && !strings.ContainsAny(a, " \t\"'$\\;&|<>()*?") {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}

// Package vm runs QEMU virtual machines, for the lab (`etcd-rescue-lab drill`)
// and, through package test/qemu, for tests: it builds the command line
// from a Spec (or takes one whole), logs it so a run can be reproduced,
// keeps the serial console in a buffer that Expect waits on, copies its
// lines to a log function with times relative to the VM's start, and kills
// QEMU by its own PID.
package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Disk is a raw disk image attached as virtio-blk.
type Disk struct {
	Path   string
	Serial string
}

// Spec describes a VM.
type Spec struct {
	Name string
	// QEMU is the binary or a wrapper that runs it (in a network
	// namespace, say). Default qemu-system-x86_64.
	QEMU string
	// Accel is kvm or tcg (default).
	Accel string
	// Memory in MiB (default 768) and CPUs (default 1).
	Memory, CPUs int
	// Kernel, Initrd and Append boot a kernel directly.
	Kernel, Initrd, Append string
	Disks                  []Disk
	// FwCfg are fw_cfg entries: name to file.
	FwCfg map[string]string
	// Network are QEMU's network arguments; none means -nic none.
	Network []string
	// Extra are more QEMU arguments.
	Extra []string
	// Timeout kills the VM after it. Default 30 minutes.
	Timeout time.Duration
	// Log receives the command line and every console line.
	Log func(format string, a ...any)
}

// Machine is the start of every QEMU command line: a q35 machine with no
// default devices and no display, the serial console on stdio, and
// -no-reboot so that a guest reboot or power-off ends QEMU.
func Machine(qemu, accel string, memory, cpus int) []string {
	return []string{qemu, "-machine", "q35", "-accel", accel, "-m", fmt.Sprint(memory), "-smp", fmt.Sprint(cpus),
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"}
}

// NetworkArgs are the given network arguments, or none at all (-nic none).
func NetworkArgs(network []string) []string {
	if len(network) > 0 {
		return network
	}
	return []string{"-nic", "none"}
}

// Cmdline returns the QEMU command line.
func (s *Spec) Cmdline() []string {
	args := append(Machine(s.QEMU, s.Accel, s.Memory, s.CPUs), "-kernel", s.Kernel, "-initrd", s.Initrd, "-append", s.Append)
	for i, d := range s.Disks {
		id := fmt.Sprintf("disk%d", i)
		dev := "virtio-blk-pci,drive=" + id
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=%s", d.Path, id), "-device", dev)
	}
	for name, file := range s.FwCfg {
		args = append(args, "-fw_cfg", fmt.Sprintf("name=%s,file=%s", name, file))
	}
	args = append(args, NetworkArgs(s.Network)...)
	return append(args, s.Extra...)
}

// VM is a running QEMU.
type VM struct {
	Name    string
	Started time.Time

	log    func(format string, a ...any)
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	mu     sync.Mutex
	buf    bytes.Buffer
	cursor int
	logged int
	update chan struct{}
	lines  []string
}

// Start starts QEMU.
func Start(s Spec) (*VM, error) {
	if s.QEMU == "" {
		s.QEMU = "qemu-system-x86_64"
	}
	if s.Accel == "" {
		s.Accel = "tcg"
	}
	if s.Memory == 0 {
		s.Memory = 768
	}
	if s.CPUs == 0 {
		s.CPUs = 1
	}
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Minute
	}
	return Run(s.Name, s.Cmdline(), s.Timeout, s.Log)
}

// Run starts QEMU with a whole command line (args[0] is the binary), kills
// it after timeout, and sends the command line and console lines to log.
func Run(name string, args []string, timeout time.Duration, log func(format string, a ...any)) (*VM, error) {
	if log == nil {
		log = func(string, ...any) {}
	}
	log("%s: QEMU command line (to reproduce):\n%s", name, ShellQuote(args))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	vm := &VM{Name: name, log: log, cmd: cmd, cancel: cancel, done: make(chan struct{}), update: make(chan struct{})}
	cmd.Stdout = (*console)(vm)
	cmd.Stderr = (*console)(vm)
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
		return nil, fmt.Errorf("start %s: %w (install qemu-system-x86)", args[0], err)
	}
	go func() {
		vm.err = cmd.Wait()
		vm.flush()
		close(vm.done)
		vm.notify()
	}()
	return vm, nil
}

// Send types s on the serial console (add "\n" to run a command).
func (vm *VM) Send(s string) error {
	_, err := io.WriteString(vm.stdin, s)
	return err
}

// Kill ends QEMU by its PID (a hard power-off) and waits for it.
func (vm *VM) Kill() {
	select {
	case <-vm.done:
	default:
		_ = vm.cmd.Process.Kill()
		<-vm.done
	}
	vm.cancel()
}

// Wait waits up to timeout for the guest to end QEMU, then kills it.
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

// Expect waits until the console shows s after the previous match and
// returns how long after the start it appeared.
func (vm *VM) Expect(s string, timeout time.Duration) (time.Duration, error) {
	return vm.expect(func(b []byte) (int, int) { return bytes.Index(b, []byte(s)), len(s) }, fmt.Sprintf("%q", s), timeout)
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
		if i, n := find(vm.buf.Bytes()[vm.cursor:]); i >= 0 {
			vm.cursor += i + n
			vm.mu.Unlock()
			return time.Since(vm.Started), nil
		}
		update := vm.update
		vm.mu.Unlock()
		select {
		case <-update:
		case <-vm.done:
			vm.mu.Lock()
			i, n := find(vm.buf.Bytes()[vm.cursor:])
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

// Console returns everything the console printed so far.
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

type console VM

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]|\x1bc|\r`)

func (c *console) Write(p []byte) (int, error) {
	vm := (*VM)(c)
	vm.mu.Lock()
	vm.buf.Write(p)
	pending := vm.buf.Bytes()[vm.logged:]
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
		vm.log("[%6.2fs] %s: %s", time.Since(vm.Started).Seconds(), vm.Name, l)
	}
	vm.notify()
	return len(p), nil
}

func (vm *VM) flush() {
	vm.mu.Lock()
	rest := ansi.ReplaceAllString(string(vm.buf.Bytes()[vm.logged:]), "")
	vm.logged = vm.buf.Len()
	if strings.TrimSpace(rest) != "" {
		vm.lines = append(vm.lines, rest)
	}
	vm.mu.Unlock()
	if strings.TrimSpace(rest) != "" {
		vm.log("[%6.2fs] %s: %s", time.Since(vm.Started).Seconds(), vm.Name, rest)
	}
}

func (vm *VM) notify() {
	vm.mu.Lock()
	close(vm.update)
	vm.update = make(chan struct{})
	vm.mu.Unlock()
}

// ShellQuote joins a command line so that a shell runs it as it was.
func ShellQuote(args []string) string {
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

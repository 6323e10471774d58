//go:build linux

package boot

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/netup"
)

// Linux returns a Machine wired to the real system calls.
func Linux(console *os.File, version string) *Machine {
	out := &consoleWriter{files: openConsoles(), fallback: console}
	return &Machine{
		Console: out,
		Version: version,
		Mount: func(source, target, fstype string, readOnly bool, data string) error {
			var flags uintptr
			if readOnly {
				flags |= unix.MS_RDONLY
			}
			return unix.Mount(source, target, fstype, flags, data)
		},
		Bind: func(source, target string) error {
			return unix.Mount(source, target, "", unix.MS_BIND, "")
		},
		RemountReadOnly: func(target string) error {
			return unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
		},
		Unmount:     func(target string) error { return unix.Unmount(target, 0) },
		MountSystem: mountSystem,
		LoadModule:  loadModule,
		Sync:        unix.Sync,
		Shell: func() error {
			err := consoleShell()
			out.reopen()
			return err
		},
		// The last lines (the marker) must leave the serial port before
		// the machine ends: the kernel does not wait for the tty.
		PowerOff: func() error { out.drain(); return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF) },
		Reboot:   func() error { out.drain(); return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART) },
		Network: func(ctx context.Context, env *Env, load func(...string) error) error {
			if err := netup.Member(ctx, env.Member, env.Root, load, 15*time.Second, env.Console); err != nil {
				return err
			}
			if env.Member.IP == "" {
				return nil
			}
			// Show which peers the network reaches, before the role's
			// own lines; a peer that does not answer costs 3s at most.
			netup.ProbePeers(ctx, env.Plan, env.Member.Name, 3*time.Second, env.Console)
			return nil
		},
	}
}

// loadModule loads a module file with parameters; one already loaded (or
// built in) is fine.
func loadModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// mountSystem mounts what u-root's init may not have: proc, sysfs and
// devtmpfs, each only if its mount point is not already a mount.
func mountSystem() error {
	for _, m := range []struct{ fstype, target string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"},
	} {
		if isMounted(m.target) {
			continue
		}
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	return nil
}

func isMounted(target string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == target {
			return true
		}
	}
	return false
}

// ShellPath is the image's default shell (u-root's gosh).
const ShellPath = "/bin/defaultsh"

// consoleShell runs the image's shell on /dev/console as its controlling
// terminal and waits for it to exit.
func consoleShell() error {
	tty, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer tty.Close()
	cmd := exec.Command(ShellPath)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = append(os.Environ(), "PS1=etcd-rescue# ")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return cmd.Run()
}

// consoleWriter writes every line straight to the kernel's consoles. It
// does not go through stdout: u-root's init hands the uinit a pipe that it
// copies to the consoles itself, and whatever is still in that pipe is lost
// when the machine powers off right after the marker line.
type consoleWriter struct {
	mu       sync.Mutex
	files    []*os.File
	fallback io.Writer
}

// openConsoles opens the consoles named by console= on the kernel command
// line (else /dev/console) for writing.
func openConsoles() []*os.File {
	b, _ := os.ReadFile("/proc/cmdline")
	var files []*os.File
	seen := map[string]bool{}
	names := []string{}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "console="); ok {
			name, _, _ := strings.Cut(v, ",")
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		names = []string{"console"}
	}
	for _, n := range names {
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if f, err := os.OpenFile("/dev/"+n, os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			files = append(files, f)
		}
	}
	return files
}

// Write writes p to every console; one that fails (a VGA console on a
// headless machine) does not stop the others.
func (c *consoleWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.files) == 0 {
		return c.fallback.Write(p)
	}
	var ok bool
	var lastErr error
	for _, f := range c.files {
		if _, err := f.Write(p); err != nil {
			lastErr = err
			continue
		}
		ok = true
	}
	if !ok {
		return 0, lastErr
	}
	return len(p), nil
}

// drain waits until the consoles have transmitted what was written to
// them (tcdrain).
func (c *consoleWriter) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.files {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
	}
}

// reopen opens the consoles anew: a shell's exit hangs up the terminal it
// controlled, and every file open on it with it.
func (c *consoleWriter) reopen() {
	files := openConsoles()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.files {
		f.Close()
	}
	c.files = files
}

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
	out := &switchWriter{w: console}
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
		RemountReadOnly: func(target string) error {
			return unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
		},
		Unmount:     func(target string) error { return unix.Unmount(target, 0) },
		MountSystem: mountSystem,
		LoadModule:  loadModule,
		Sync:        unix.Sync,
		Shell: func() error {
			err := consoleShell()
			// The shell's exit hung up the console it controlled: later
			// lines go to a freshly opened /dev/console.
			if f, oerr := os.OpenFile("/dev/console", os.O_WRONLY, 0); oerr == nil {
				out.set(f)
			}
			return err
		},
		// The last lines (the marker) must leave the serial port before
		// the machine ends: the kernel does not wait for the tty.
		PowerOff: func() error { out.drain(); return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF) },
		Reboot:   func() error { out.drain(); return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART) },
		Network: func(ctx context.Context, env *Env) error {
			return netup.Static(ctx, env.Member, 15*time.Second, env.Console)
		},
	}
}

// loadModule loads a module file; one already loaded (or built in) is fine.
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
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

// switchWriter is the console writer; it can be pointed at a new file.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// drain waits until the console has transmitted what was written to it
// (tcdrain); a console that is not a terminal needs nothing.
func (s *switchWriter) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.w.(*os.File); ok {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
	}
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

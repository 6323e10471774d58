//go:build linux

package boot

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/netup"
)

// Linux returns a Machine wired to the real system calls.
func Linux(console *os.File, version string) *Machine {
	return &Machine{
		Console: console,
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
		PowerOff:    func() error { return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF) },
		Reboot:      func() error { return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART) },
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

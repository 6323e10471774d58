// Package boot is the rescue image's program: it runs as u-root's uinit,
// finds the Ignition config (QEMU fw_cfg, a labelled partition, or
// ignition.config.url= on the kernel command line), loads the kernel modules
// the machine's hardware needs (package coldplug), finds and mounts the master's root filesystem and the
// backup volume, runs the role the config names, then unmounts, syncs and
// powers the machine off (or reboots it when the role file says so).
//
// Every kernel side effect (mount, module load, power off) is a function
// field of Machine, so the logic runs in unit tests against a fake /sys and
// /dev tree. A failure never leaves a filesystem mounted read-write; with
// etcd-rescue.shell=1 on the kernel command line it returns to u-root's init,
// which starts a shell on the console, instead of powering off.
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/coldplug"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/volumes"
)

// Kernel command line flags the boot reads.
const (
	// FlagShell=1 drops to a shell on failure instead of powering off.
	FlagShell = "etcd-rescue.shell"
	// FlagDryRun=1 asks the role to check and explain only.
	FlagDryRun = "etcd-rescue.dryrun"
	// FlagConfigURL points at the config: file:///path (in the image).
	FlagConfigURL = "ignition.config.url"
)

// Where the boot mounts things (under Machine.Root).
const (
	MountRoot   = "/run/etcd-rescue/root"
	MountBackup = "/run/etcd-rescue/backup"
	mountProbe  = "/run/etcd-rescue/probe"
)

// Machine is the rescue machine as the boot sees it. Zero-valued function
// fields are filled with the real system calls by Linux().
type Machine struct {
	// Root prefixes every path the boot touches (/proc, /sys, /dev, /run);
	// "" means the real root. Tests point it at a fake tree.
	Root string
	// Console receives every line the boot prints.
	Console io.Writer
	// Version is printed in the first line.
	Version string
	// Cmdline is the kernel command line; empty means read /proc/cmdline.
	Cmdline string
	// DeviceWait bounds how long the boot waits for disks and the fw_cfg
	// config to appear after loading modules. Default 15s.
	DeviceWait time.Duration

	// Mount mounts source on target (both already prefixed with Root).
	Mount func(source, target, fstype string, readOnly bool, data string) error
	// Bind bind-mounts source on target (both prefixed with Root); used to
	// assemble an OSTree root.
	Bind func(source, target string) error
	// Remount changes a mount to read-only (used when unmount fails).
	RemountReadOnly func(target string) error
	// Unmount unmounts target.
	Unmount func(target string) error
	// MountSystem mounts proc, sysfs, devtmpfs and tmpfs where missing.
	MountSystem func() error
	// LoadModule loads one kernel module file with parameters; an
	// already loaded module is not an error.
	LoadModule func(path, params string) error
	// Sync flushes filesystem buffers.
	Sync func()
	// Shell runs an interactive shell on the console and waits for it
	// (etcd-rescue.shell=1 after a failure); nil means return to the
	// caller instead.
	Shell func() error
	// PowerOff and Reboot end the machine; they return only on error.
	PowerOff func() error
	Reboot   func() error
	// Network, when set, brings up the network the role needs (see
	// network.go); it runs once the master's root is mounted, as the
	// master's own network configuration is read from it. load loads
	// kernel modules by name. A failure is reported and the role runs
	// without network.
	Network func(ctx context.Context, env *Env, load func(names ...string) error) error

	mounts   []mounted
	flags    map[string]string
	after    string
	coldplug *coldplug.Loader
	volumes  *volumes.Activator
}

type mounted struct {
	dev, target string
	rw          bool
}

// Run runs the whole boot and ends the machine: it powers off (or reboots
// after a successful role whose config asks for it); after a failure with
// etcd-rescue.shell=1 it first runs a shell on the console and powers off
// when the operator leaves it. It returns only when the machine could not be
// ended.
func (m *Machine) Run(ctx context.Context) error {
	err := m.Boot(ctx)
	return m.End(err)
}

// stage errors are printed as a marker line by the boot itself; role errors
// were already reported by the role.
type roleError struct{ error }

func (e roleError) Unwrap() error { return e.error }

// Boot does everything but ending the machine: it returns the role's error
// or the reason the role could not run, with every filesystem unmounted.
func (m *Machine) Boot(ctx context.Context) (err error) {
	if m.Console == nil {
		m.Console = io.Discard
	}
	if m.DeviceWait == 0 {
		m.DeviceWait = 15 * time.Second
	}
	fmt.Fprintf(m.Console, "etcd-rescue %s starting\n", m.Version)
	marker := "ETCD-RESCUE"
	defer func() {
		if uerr := m.unmountAll(); uerr != nil {
			err = errors.Join(err, uerr)
		}
		var re roleError
		if err != nil && !errors.As(err, &re) {
			fmt.Fprintf(m.Console, "%s-FAILED: %s\n", marker, oneLine(err))
		}
	}()

	if m.MountSystem != nil {
		if err := m.MountSystem(); err != nil {
			return fmt.Errorf("mount /proc, /sys, /dev: %w", err)
		}
	}
	m.readCmdline()
	m.loadModules(ctx)

	cfg, src, err := m.findConfig(ctx)
	if err != nil {
		return err
	}
	marker = strings.ToUpper(cfg.Role.Role)
	m.after = cfg.Role.After
	fmt.Fprintf(m.Console, "config: %s: role %s, member %s, plan for cluster %s (%d members)\n",
		src, cfg.Role.Role, orNone(cfg.Role.Member), cfg.Plan.Cluster.Name, len(cfg.Plan.Members))
	spec, ok := lookupRole(cfg.Role.Role)
	if !ok {
		return fmt.Errorf("role %q is not built into this image (it has: %s)", cfg.Role.Role, strings.Join(Roles(), ", "))
	}

	env := &Env{
		Plan:    cfg.Plan,
		Role:    cfg.Role,
		Console: m.Console,
		Files:   cfg.Files,
		Token:   cfg.Token(),
		DryRun:  m.flag(FlagDryRun) == "1",
	}
	env.WriteBesideBackup = func(name string, data []byte) (string, error) { return m.writeBesideBackup(env, name, data) }
	if cfg.Role.Member != "" {
		env.Member, _ = cfg.Plan.Member(cfg.Role.Member)
	}

	disks := m.scanDisks(ctx, env, spec)
	if err := m.setupRoot(ctx, env, spec, disks); err != nil {
		return err
	}
	if err := m.setupBackup(ctx, env, spec, disks); err != nil {
		return err
	}
	m.bringUpNetwork(ctx, env)
	if err := spec.run(ctx, env); err != nil {
		return roleError{err}
	}
	return nil
}

// End powers off or reboots after Boot returned err, after a shell when
// one was asked for. It returns only if the machine could not be ended.
func (m *Machine) End(err error) error {
	if m.Sync != nil {
		m.Sync()
	}
	if err != nil && m.flag(FlagShell) == "1" {
		if m.Shell == nil {
			fmt.Fprintf(m.Console, "etcd-rescue: %s=1: leaving you a shell; every filesystem is unmounted.\n", FlagShell)
			return err
		}
		fmt.Fprintf(m.Console, "etcd-rescue: %s=1: starting a shell; every filesystem is unmounted. Exit it to power off.\n", FlagShell)
		if serr := m.Shell(); serr != nil {
			fmt.Fprintf(m.Console, "etcd-rescue: shell: %v\n", serr)
		}
		if m.Sync != nil {
			m.Sync()
		}
	}
	if err == nil && m.after == ignition.AfterReboot && m.Reboot != nil {
		fmt.Fprintln(m.Console, "etcd-rescue: rebooting")
		return errors.Join(err, m.Reboot())
	}
	if m.PowerOff != nil {
		fmt.Fprintln(m.Console, "etcd-rescue: powering off")
		return errors.Join(err, m.PowerOff())
	}
	return err
}

// readCmdline parses the kernel command line into key=value flags.
func (m *Machine) readCmdline() {
	line := m.Cmdline
	if line == "" {
		b, _ := os.ReadFile(m.path("/proc/cmdline"))
		line = string(b)
	}
	m.flags = parseCmdline(line)
}

func parseCmdline(line string) map[string]string {
	flags := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			v = "1"
		}
		flags[k] = strings.Trim(v, `"`)
	}
	return flags
}

func (m *Machine) flag(k string) string { return m.flags[k] }

func (m *Machine) path(p string) string {
	if m.Root == "" {
		return p
	}
	return filepath.Join(m.Root, p)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

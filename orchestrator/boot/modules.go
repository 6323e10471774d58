package boot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/initrd"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/coldplug"
)

// ModulesLoadList is the image's list of modules every boot loads (see
// initrd.ModulesLoadList).
const ModulesLoadList = "/etc/etcd-rescue/modules.load"

// modulesDir is where the image keeps its kernel's modules and their index.
const modulesDir = "/lib/modules"

// coldplugTimeout bounds the first coldplug: a device that keeps appearing
// and disappearing must not hold the boot.
const coldplugTimeout = 10 * time.Second

// loadModules loads the drivers the machine's devices need (coldplug) and
// the modules the image lists for every boot, and makes every later mount
// load its filesystem's modules first. The first coldplug pass starts the
// controllers' drivers, so their disks are probed while the listed modules
// load; then coldplug runs until no new device appears. A module that
// fails is reported and skipped: the disks it would have shown are then
// reported missing with a clearer reason.
func (m *Machine) loadModules(ctx context.Context) {
	if m.LoadModule == nil {
		return
	}
	if idx := m.moduleIndex(); idx != nil {
		m.coldplug = &coldplug.Loader{Root: m.Root, Index: idx, Load: m.LoadModule, Console: m.Console}
		m.coldplug.Rescan()
		m.loadFilesystemsOnMount()
	}
	m.loadBootModules()
	if m.coldplug != nil {
		m.coldplug.Run(ctx, coldplugTimeout)
	}
}

// loadFilesystemsOnMount wraps Mount so that a filesystem type's modules
// (initrd.FilesystemModules) are loaded before its first mount. A type the
// image has no modules for is left to the kernel (built in, or an error
// from the mount itself).
func (m *Machine) loadFilesystemsOnMount() {
	mount := m.Mount
	if mount == nil {
		return
	}
	m.Mount = func(source, target, fstype string, readOnly bool, data string) error {
		if mods, ok := initrd.FilesystemModules[fstype]; ok {
			var carried []string
			for _, mod := range mods {
				if m.coldplug.Index.Has(mod) && !m.coldplug.Index.Builtin(mod) {
					carried = append(carried, mod)
				}
			}
			if err := m.coldplug.LoadModules(carried...); err != nil {
				return fmt.Errorf("load the %s filesystem's modules: %w", fstype, err)
			}
		}
		return mount(source, target, fstype, readOnly, data)
	}
}

// loadBootModules loads the modules listed in ModulesLoadList, in order.
func (m *Machine) loadBootModules() {
	b, err := os.ReadFile(m.path(ModulesLoadList))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return
	}
	var n, failed int
	start := time.Now()
	for _, p := range strings.Fields(string(b)) {
		if err := m.LoadModule(m.path(p), ""); err != nil {
			failed++
			fmt.Fprintf(m.Console, "modules: %s: %v\n", filepath.Base(p), err)
			continue
		}
		n++
	}
	fmt.Fprintf(m.Console, "modules: %d loaded, %d failed (%s)\n", n, failed, time.Since(start).Round(time.Millisecond))
}

// moduleIndex reads the image's module index (the one folder under
// /lib/modules holding a modules.dep), or returns nil when there is none.
func (m *Machine) moduleIndex() *initrd.Kmods {
	dirs, _ := filepath.Glob(m.path(filepath.Join(modulesDir, "*", "modules.dep")))
	if len(dirs) != 1 {
		if len(dirs) > 1 {
			fmt.Fprintf(m.Console, "modules: %d kernels' modules in %s; an image carries one: no drivers loaded\n", len(dirs), modulesDir)
		}
		return nil
	}
	idx, err := initrd.ReadKmods(filepath.Dir(dirs[0]))
	if err != nil {
		fmt.Fprintf(m.Console, "modules: %v: no drivers loaded\n", err)
		return nil
	}
	return idx
}

// rescanDevices gives drivers to devices that appeared since the last
// scan, and reports whether the devices are still changing.
func (m *Machine) rescanDevices() (busy bool) {
	if m.coldplug == nil {
		return false
	}
	m.coldplug.Rescan()
	m.coldplug.PrintBound()
	return !m.coldplug.Quiet()
}

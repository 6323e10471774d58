// Package coldplug loads the kernel modules a machine's devices need, the
// way udev's coldplug does: every device under /sys/bus/*/devices with a
// modalias and no driver is matched against the image's modules.alias, the
// matching modules are loaded with their dependencies first (modules.dep,
// modules.softdep), and the scan repeats until no new device appears (USB
// devices appear after their host controller's driver loads, SCSI disks
// after their HBA's). Only what the hardware asks for is loaded: loading
// every driver would cost boot time and can hang on hardware that is not
// there.
//
// The console names each device found and the driver that took it, and
// says plainly when a storage, network or USB controller has none.
package coldplug

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-rescue/etcd-rescue/initrd"
)

// Params are the module parameters the loader passes, by module name.
// usb-storage waits a second by default before it scans a new device for
// disks ("let it settle"); the rescue lists disks right after coldplug.
var Params = map[string]string{"usb_storage": "delay_use=0"}

// Loader loads the modules the machine's devices need.
type Loader struct {
	// Root prefixes /sys and the module paths ("" is the real root).
	Root string
	// Index is the image's module index (its /lib/modules/<version>).
	Index *initrd.Kmods
	// Load loads one module file (a path under Root) with parameters;
	// an already loaded module is not an error.
	Load func(path, params string) error
	// Console receives one line per device and driver.
	Console io.Writer
	// Settle is how long the scan must see no new device before Run
	// returns. Default 500ms.
	Settle time.Duration
	// Poll is the pause between two scans. Default 25ms.
	Poll time.Duration

	devices  map[string]*device // by sysfs path
	order    []string           // sysfs paths in the order found
	loaded   map[string]error   // module name -> load result
	modules  int                // module files loaded
	lastNew  time.Time
	reported bool
}

// device is one device seen under /sys/bus.
type device struct {
	bus, name, modalias string
	sysPath             string
	modules             []string // the image's modules that match it
	printed             bool
}

// Result sums up what Run did.
type Result struct {
	Devices int // devices with a modalias seen
	Modules int // module files loaded (drivers and their dependencies)
	// Unbound are the storage, network and USB controllers on PCI that
	// no driver took.
	Unbound []string
	Elapsed time.Duration
}

func (l *Loader) init() {
	if l.devices == nil {
		l.devices = map[string]*device{}
		l.loaded = map[string]error{}
	}
	if l.Console == nil {
		l.Console = io.Discard
	}
	if l.Settle == 0 {
		l.Settle = 500 * time.Millisecond
	}
	if l.Poll == 0 {
		l.Poll = 25 * time.Millisecond
	}
}

// Run scans and loads until no new device has appeared for Settle (or ctx
// ends, or timeout passes), then prints the devices and their drivers, and
// a line for each PCI storage, network or USB controller without a driver.
func (l *Loader) Run(ctx context.Context, timeout time.Duration) Result {
	l.init()
	start := time.Now()
	l.lastNew = start
	deadline := start.Add(timeout)
	for {
		l.Rescan()
		now := time.Now()
		if now.Sub(l.lastNew) >= l.Settle || now.After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(l.Poll):
		}
	}
	l.PrintBound()
	res := Result{Devices: len(l.devices), Modules: l.modules, Elapsed: time.Since(start)}
	res.Unbound = l.reportUnbound()
	fmt.Fprintf(l.Console, "coldplug: %d modules loaded for %d devices (%s)\n",
		res.Modules, res.Devices, res.Elapsed.Round(time.Millisecond))
	return res
}

// Rescan looks once for devices not seen before and loads their modules.
// It reports whether a new device appeared. The boot keeps calling it while
// it waits for disks, so a device that appears late still gets its driver.
func (l *Loader) Rescan() bool {
	l.init()
	found := false
	for _, d := range l.scan() {
		if _, seen := l.devices[d.sysPath]; seen {
			continue
		}
		found = true
		l.devices[d.sysPath] = d
		l.order = append(l.order, d.sysPath)
		for _, m := range l.Index.Match(d.modalias) {
			if l.Index.Has(m) && !l.Index.Builtin(m) {
				d.modules = append(d.modules, m)
			}
		}
		if l.hasDriver(d) {
			continue
		}
		for _, m := range d.modules {
			l.load(m)
		}
	}
	if found {
		l.lastNew = time.Now()
	}
	return found
}

// Quiet reports whether no new device has appeared for Settle.
func (l *Loader) Quiet() bool {
	l.init()
	return time.Since(l.lastNew) >= l.Settle
}

// LoadModules loads modules by name (with their dependencies), for the
// steps that need a module no device asks for (bonding, dm_mod, ...).
func (l *Loader) LoadModules(names ...string) error {
	l.init()
	for _, n := range names {
		if err := l.load(initrd.ModName(n)); err != nil {
			return err
		}
	}
	return nil
}

// load loads module name and what it depends on, once.
func (l *Loader) load(name string) error {
	if err, done := l.loaded[name]; done {
		return err
	}
	res := l.Index.Resolve([]string{name})
	var err error
	for _, p := range res.Load {
		dep := initrd.ModName(p)
		if prev, done := l.loaded[dep]; done {
			if prev != nil && dep != name && !errors.Is(prev, syscall.ENODEV) {
				err = fmt.Errorf("%s needs %s, which failed: %w", name, dep, prev)
			}
			continue
		}
		lerr := l.Load(filepath.Join(l.Index.Dir, p), Params[dep])
		l.loaded[dep] = lerr
		if errors.Is(lerr, syscall.ENODEV) && dep != name {
			// A CPU-specific variant (crc32c-intel, aesni-intel) on a
			// CPU without the feature: the generic one serves.
			continue
		}
		if lerr != nil {
			fmt.Fprintf(l.Console, "coldplug: load %s: %v\n", dep, lerr)
			err = lerr
			continue
		}
		l.modules++
	}
	if len(res.Missing) > 0 {
		err = fmt.Errorf("module %s is not in this image", name)
	}
	l.loaded[name] = err
	return err
}

// scan lists the devices under /sys/bus/*/devices that have a modalias,
// sorted by bus and name.
func (l *Loader) scan() []*device {
	var out []*device
	buses, _ := os.ReadDir(l.rootPath("/sys/bus"))
	for _, b := range buses {
		dir := l.rootPath(filepath.Join("/sys/bus", b.Name(), "devices"))
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			raw, err := os.ReadFile(filepath.Join(p, "modalias"))
			alias := strings.TrimSpace(string(raw))
			if err != nil || alias == "" {
				continue
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				real = p
			}
			out = append(out, &device{bus: b.Name(), name: e.Name(), modalias: alias, sysPath: real})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].bus != out[j].bus {
			return out[i].bus < out[j].bus
		}
		return out[i].name < out[j].name
	})
	return out
}

func (l *Loader) hasDriver(d *device) bool { return l.driver(d) != "" }

// driver is the name of the driver bound to d, "" for none.
func (l *Loader) driver(d *device) string {
	target, err := os.Readlink(filepath.Join(d.sysPath, "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(target)
}

func (l *Loader) rootPath(p string) string {
	if l.Root == "" || strings.HasPrefix(p, l.Root+"/") {
		return p
	}
	return filepath.Join(l.Root, p)
}

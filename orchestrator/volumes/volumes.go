// Package volumes activates the block-device layers a master's root or
// backup volume may sit on, before the boot looks for filesystems: md RAID
// (mdadm), LUKS (cryptsetup) and LVM2 logical volumes (lvm), with Debian's
// own tools the image carries (package initrd). Layers stack: an array or
// an opened LUKS volume is a new block device, and the next Activate looks
// into it. A role that only reads gets everything read-only: arrays are
// assembled --readonly, LUKS volumes opened --readonly, logical volumes
// activated read-only with LVM's metadata_read_only, so nothing on the
// disks changes.
package volumes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The tools, where package initrd puts them.
const (
	Mdadm      = "/usr/sbin/mdadm"
	LVM        = "/usr/sbin/lvm"
	Cryptsetup = "/usr/sbin/cryptsetup"
)

// Key is a LUKS key the operator gave: a passphrase or the bytes of a key
// file, and where it came from (for the console).
type Key struct {
	Source string
	Data   []byte
}

// Activator finds and activates volumes. Zero-valued function fields run
// the real tools.
type Activator struct {
	// Root prefixes /sys, /dev and /run ("" is the real root).
	Root string
	// Console receives one line per volume activated or refused.
	Console io.Writer
	// ReadOnly activates everything read-only (a role that only reads).
	ReadOnly bool
	// Keys are tried, in order, on every LUKS volume.
	Keys []Key
	// KeyHelp says how to give a LUKS key, for the error of a volume
	// that none opens.
	KeyHelp string
	// LoadModules loads kernel modules by name (dm_mod, raid1, ...).
	LoadModules func(names ...string) error
	// Run runs a tool with stdin and returns its combined output.
	Run func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)

	looked   map[string]bool
	problems map[string]error
}

// Activate looks into the block devices it has not looked into yet and
// activates the RAID arrays, LUKS volumes and volume groups they hold. It
// reports whether it made new block devices, which the caller should look
// into with another Activate.
func (a *Activator) Activate(ctx context.Context) bool {
	if a.looked == nil {
		a.looked, a.problems = map[string]bool{}, map[string]error{}
	}
	if a.Console == nil {
		a.Console = io.Discard
	}
	if a.Run == nil {
		a.Run = run
	}
	var md, luks, lvm []member
	for _, name := range a.blockDevices() {
		if a.looked[name] {
			continue
		}
		a.looked[name] = true
		m := member{name: name, dev: a.path("/dev/" + name)}
		switch m.kind = probe(m.dev, a.sizeOf(name)); m.kind {
		case kindMD:
			md = append(md, m)
		case kindLUKS:
			luks = append(luks, m)
		case kindLVM:
			lvm = append(lvm, m)
		}
	}
	made := false
	if len(md) > 0 {
		made = a.assembleMD(ctx, md) || made
	}
	for _, m := range luks {
		made = a.openLUKS(ctx, m) || made
	}
	if len(lvm) > 0 {
		made = a.activateLVM(ctx, lvm) || made
	}
	return made
}

// Problems are the volumes that could not be activated, one error each
// naming the device and what to do, sorted by device.
func (a *Activator) Problems() []error {
	var names []string
	for n := range a.problems {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []error
	for _, n := range names {
		out = append(out, a.problems[n])
	}
	return out
}

func (a *Activator) problem(dev string, err error) {
	a.problems[dev] = err
	fmt.Fprintf(a.Console, "volumes: %v\n", err)
}

type member struct {
	name, dev string
	kind      kind
}

// blockDevices lists /sys/class/block, less RAM disks and devices another
// layer already holds (an array's members, an opened LUKS volume).
func (a *Activator) blockDevices() []string {
	ents, err := os.ReadDir(a.path("/sys/class/block"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		if Held(a.Root, n) {
			continue
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Held reports whether another block device is built on the device (it is
// an active array's member, an opened LUKS volume, a volume group's PV):
// its own contents are not a filesystem to mount.
func Held(root, name string) bool {
	h, err := os.ReadDir(filepath.Join(root, "/sys/class/block", name, "holders"))
	return err == nil && len(h) > 0
}

func (a *Activator) sizeOf(name string) int64 {
	b, err := os.ReadFile(a.path("/sys/class/block/" + name + "/size"))
	if err != nil {
		return 0
	}
	var sectors int64
	fmt.Sscan(strings.TrimSpace(string(b)), &sectors)
	return sectors * 512
}

func (a *Activator) path(p string) string {
	if a.Root == "" {
		return p
	}
	return filepath.Join(a.Root, p)
}

func (a *Activator) load(names ...string) error {
	if a.LoadModules == nil {
		return nil
	}
	return a.LoadModules(names...)
}

// toolTimeout bounds one tool run: a LUKS key derivation under emulation
// takes seconds, nothing takes minutes.
const toolTimeout = 2 * time.Minute

func run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	// lvm warns about every inherited descriptor otherwise.
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	return cmd.CombinedOutput()
}

// lastLines is a tool's output for an error message: its last lines, on
// one line.
func lastLines(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

func readAttr(root, name, attr string) string {
	b, _ := os.ReadFile(filepath.Join(root, "/sys/class/block", name, attr))
	return strings.TrimSpace(string(b))
}

func modeWord(ro bool) string {
	if ro {
		return "read-only"
	}
	return "read-write"
}

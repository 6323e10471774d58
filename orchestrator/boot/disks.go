package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/volumes"
)

// disk is a block device that holds a filesystem the boot recognises.
type disk struct {
	name string // vda1
	dev  string // /dev/vda1 (prefixed with Machine.Root)
	fs   FS
}

func (d disk) String() string {
	s := d.name + " (" + d.fs.Type
	if d.fs.Label != "" {
		s += " label=" + d.fs.Label
	}
	if d.fs.UUID != "" {
		s += " uuid=" + d.fs.UUID
	}
	return s + ")"
}

func describe(disks []disk) string {
	if len(disks) == 0 {
		return "none"
	}
	var s []string
	for _, d := range disks {
		s = append(s, d.String())
	}
	return strings.Join(s, ", ")
}

// seen describes the disks for an error that something was not found,
// and names the storage controllers no driver took: their disks cannot
// be among them.
func (m *Machine) seen(disks []disk) string {
	s := describe(disks)
	if m.volumes != nil {
		for _, err := range m.volumes.Problems() {
			s += "; " + err.Error()
		}
	}
	if m.coldplug == nil {
		return s
	}
	if unbound := m.coldplug.Unbound(); len(unbound) > 0 {
		s += fmt.Sprintf(" (no driver took the PCI controller(s) %s: this image's kernel lacks it; see README 'Adding a driver')", strings.Join(unbound, ", "))
	}
	return s
}

// listDisks lists the block devices in /sys/class/block whose superblock
// names a filesystem, sorted by name. RAM and loop devices are skipped, and
// so are devices another layer holds (a RAID member, a LUKS volume).
func (m *Machine) listDisks() []disk {
	ents, err := os.ReadDir(m.path("/sys/class/block"))
	if err != nil {
		return nil
	}
	var out []disk
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") || volumes.Held(m.Root, n) {
			continue
		}
		dev := m.path("/dev/" + n)
		fs, err := ProbeFS(dev)
		if err != nil || fs.Type == "" {
			continue
		}
		out = append(out, disk{name: n, dev: dev, fs: fs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// scanDisks waits until the disks the plan names by label or UUID are there
// (or, with no names, until the set of disks and devices stops changing),
// at most DeviceWait, and returns what it found. Devices that appear
// meanwhile (a USB stick, a SCSI disk scanned late) get their drivers.
// Once the devices settle, the RAID arrays, LUKS volumes and LVM logical
// volumes on them are activated (see activateVolumes), and their
// filesystems join the list.
func (m *Machine) scanDisks(ctx context.Context, env *Env, spec roleSpec) []disk {
	m.volumes = m.volumeActivator(env, spec)
	start := time.Now()
	deadline := start.Add(m.DeviceWait)
	var prev string
	stable := start
	for {
		busy := m.rescanDevices()
		disks := m.listDisks()
		now := describe(disks)
		if now != prev || busy {
			prev, stable = now, time.Now()
		}
		settled := time.Since(stable) >= diskSettle
		if settled && m.volumes.Activate(ctx) {
			continue // new block devices: list them
		}
		hinted := m.hintsFound(env, disks)
		if hinted && len(disks) > 0 && settled {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Devices that never settled within DeviceWait still get their
	// volumes activated.
	m.volumes.Activate(ctx)
	disks := m.listDisks()
	fmt.Fprintf(m.Console, "disks: %s (%s)\n", describe(disks), time.Since(start).Round(time.Millisecond))
	return disks
}

// diskSettle is how long the set of disks (and of devices, see
// rescanDevices) must stay the same before the boot takes it as complete.
const diskSettle = 500 * time.Millisecond

func (m *Machine) hintsFound(env *Env, disks []disk) bool {
	for _, h := range []struct{ label, uuid string }{
		{env.Member.Disk.Label, env.Member.Disk.UUID},
		{env.Plan.Backup.Disk.Label, env.Plan.Backup.Disk.UUID},
	} {
		if h.label == "" && h.uuid == "" {
			continue
		}
		if _, ok := findHinted(disks, h.label, h.uuid); !ok {
			return false
		}
	}
	return true
}

func findHinted(disks []disk, label, uuid string) (disk, bool) {
	for _, d := range disks {
		if d.fs.Matches(label, uuid) {
			return d, true
		}
	}
	return disk{}, false
}

// rootMarkers are paths only a master's root filesystem holds.
var rootMarkers = []string{"etc/kubernetes/manifests"}

// setupRoot finds the master's root filesystem (by the member's disk hint,
// else the one filesystem holding /etc/kubernetes/manifests, at its top or
// in an OSTree deployment) and mounts it, read-write only for a role
// registered with WritableRoot. An OSTree root (RHCOS) is presented to the
// role as the running OS sees it (see ostreeView).
func (m *Machine) setupRoot(ctx context.Context, env *Env, spec roleSpec, disks []disk) error {
	hint := env.Member.Disk
	var root disk
	switch {
	case hint.Label != "" || hint.UUID != "":
		d, ok := findHinted(disks, hint.Label, hint.UUID)
		if !ok {
			err := fmt.Errorf("root filesystem of %s (label %q, uuid %q) not found; filesystems seen: %s",
				env.Member.Name, hint.Label, hint.UUID, m.seen(disks))
			if spec.needsRoot || m.lockedVolumes() {
				return err
			}
			fmt.Fprintf(m.Console, "root: %v\n", err)
			return nil
		}
		root = d
	default:
		var found []disk
		for _, d := range disks {
			if d.fs.Type != "ext4" && d.fs.Type != "xfs" {
				continue
			}
			ok, err := m.probeFor(d, func(dir string) bool { return hasAny(dir, rootMarkers) || isOSTreeRoot(dir) })
			if err != nil {
				fmt.Fprintf(m.Console, "root: %v\n", err)
				continue
			}
			if ok {
				found = append(found, d)
			}
		}
		switch {
		case len(found) > 1:
			return fmt.Errorf("several filesystems look like a master root (%s): name the right one with members[].disk.label or uuid in the plan", describe(found))
		case len(found) == 0 && (spec.needsRoot || m.lockedVolumes()):
			return fmt.Errorf("no master root filesystem found (none holds /%s); filesystems seen: %s; attach the master's disk or name it with members[].disk in the plan",
				rootMarkers[0], m.seen(disks))
		case len(found) == 0:
			fmt.Fprintln(m.Console, "root: no master root filesystem attached (not needed for this role)")
			return nil
		}
		root = found[0]
	}
	rw := spec.writableRoot && !env.DryRun
	if err := m.mount(root, MountRoot, rw); err != nil {
		return fmt.Errorf("mount root filesystem %s: %w", root, err)
	}
	env.Root, env.RootDevice = m.path(MountRoot), root.dev
	fmt.Fprintf(m.Console, "root: %s mounted on %s %s\n", root, MountRoot, modeWord(rw))
	view, err := m.ostreeView(env, disks, rw)
	if err != nil {
		return fmt.Errorf("root filesystem %s: %w", root, err)
	}
	if view != "" {
		env.Root = view
	}
	return ctx.Err()
}

// setupBackup finds the backup volume (by the plan's backup disk hint, else
// a filesystem holding snapshot files at its top or one directory down, else
// backup.dir on the master's root) and mounts it read-only.
func (m *Machine) setupBackup(ctx context.Context, env *Env, spec roleSpec, disks []disk) error {
	if env.Plan.Source == plan.SourceSurvivorData {
		spec.needsBackup = false // the restore reads the survivor's own data dir
	}
	hint := env.Plan.Backup.Disk
	var candidates []disk
	if hint.Label != "" || hint.UUID != "" {
		d, ok := findHinted(disks, hint.Label, hint.UUID)
		if !ok {
			return m.noBackup(spec, fmt.Errorf("backup volume (label %q, uuid %q) not found; filesystems seen: %s", hint.Label, hint.UUID, m.seen(disks)))
		}
		candidates = []disk{d}
	} else {
		for _, d := range disks {
			if d.dev != env.RootDevice {
				candidates = append(candidates, d)
			}
		}
	}
	for _, d := range candidates {
		var sub string
		ok, err := m.probeFor(d, func(dir string) bool {
			s, found := backupSubdir(dir)
			sub = s
			return found
		})
		if err != nil {
			fmt.Fprintf(m.Console, "backup: %v\n", err)
			continue
		}
		if !ok {
			continue
		}
		if err := m.mount(d, MountBackup, false); err != nil {
			return fmt.Errorf("mount backup volume %s: %w", d, err)
		}
		env.Backup = filepath.Join(m.path(MountBackup), sub)
		fmt.Fprintf(m.Console, "backup: %s mounted on %s read-only; backup files in /%s\n", d, MountBackup, sub)
		return ctx.Err()
	}
	if env.Root != "" && env.Plan.Backup.Dir != "" {
		dir := filepath.Join(env.Root, env.Plan.Backup.Dir)
		if _, found := backupSubdir(dir); found {
			env.Backup = dir
			fmt.Fprintf(m.Console, "backup: on the master's root in %s\n", env.Plan.Backup.Dir)
			return nil
		}
	}
	return m.noBackup(spec, fmt.Errorf("no backup volume found (no filesystem holds snapshot_<ts>.db or snapshot_db_kuberesources_<ts>.tar.gz at its top or one directory down); filesystems seen: %s; attach the backup disk or set backup.disk in the plan", m.seen(disks)))
}

// lockedVolumes reports whether a volume could not be activated (a LUKS
// volume without its key): a root not found may be on it, so even a role
// that can do without a root fails rather than run without it.
func (m *Machine) lockedVolumes() bool {
	return m.volumes != nil && len(m.volumes.Problems()) > 0
}

func (m *Machine) noBackup(spec roleSpec, err error) error {
	if spec.needsBackup {
		return err
	}
	fmt.Fprintf(m.Console, "backup: %v (not needed for this role)\n", err)
	return nil
}

var backupGlobs = []string{"snapshot_*.db", "snapshot_db_kuberesources_*.tar.gz"}

// backupSubdir reports whether dir or one of its subdirectories holds
// backup files, and which ("" for dir itself).
func backupSubdir(dir string) (string, bool) {
	if hasGlob(dir) {
		return "", true
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		if e.IsDir() && hasGlob(filepath.Join(dir, e.Name())) {
			return e.Name(), true
		}
	}
	return "", false
}

func hasGlob(dir string) bool {
	for _, g := range backupGlobs {
		if m, _ := filepath.Glob(filepath.Join(dir, g)); len(m) > 0 {
			return true
		}
	}
	return false
}

func hasAny(dir string, rel []string) bool {
	for _, r := range rel {
		if st, err := os.Stat(filepath.Join(dir, r)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// probeFor mounts d read-only on a scratch mount point, asks test about it
// and unmounts it again.
func (m *Machine) probeFor(d disk, test func(dir string) bool) (bool, error) {
	target := filepath.Join(mountProbe, d.name)
	if err := m.mount(d, target, false); err != nil {
		return false, fmt.Errorf("look into %s: %w", d, err)
	}
	ok := test(m.path(target))
	if err := m.unmount(target); err != nil {
		return ok, err
	}
	return ok, nil
}

// mount mounts d on target (relative to Root). A read-only mount of a
// journaled filesystem skips the journal replay, so nothing is written.
func (m *Machine) mount(d disk, target string, rw bool) error {
	if m.Mount == nil {
		return errors.New("no mount implementation")
	}
	t := m.path(target)
	if err := os.MkdirAll(t, 0o755); err != nil {
		return err
	}
	data := ""
	if !rw {
		switch d.fs.Type {
		case "ext4":
			data = "noload"
		case "xfs":
			data = "norecovery"
		}
	}
	if err := m.Mount(d.dev, t, d.fs.Type, !rw, data); err != nil {
		return err
	}
	m.mounts = append(m.mounts, mounted{dev: d.dev, target: target, rw: rw})
	return nil
}

func (m *Machine) unmount(target string) error {
	for i := len(m.mounts) - 1; i >= 0; i-- {
		if m.mounts[i].target != target {
			continue
		}
		mt := m.mounts[i]
		if err := m.Unmount(m.path(target)); err != nil {
			if mt.rw && m.RemountReadOnly != nil {
				if rerr := m.RemountReadOnly(m.path(target)); rerr == nil {
					m.mounts[i].rw = false
					return fmt.Errorf("unmount %s: %w (remounted read-only)", target, err)
				}
			}
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		m.mounts = append(m.mounts[:i], m.mounts[i+1:]...)
		return nil
	}
	return nil
}

// unmountAll unmounts everything the boot mounted, newest first, after a
// sync; a read-write mount that will not unmount is made read-only.
func (m *Machine) unmountAll() error {
	if m.Sync != nil {
		m.Sync()
	}
	var errs []error
	for len(m.mounts) > 0 {
		mt := m.mounts[len(m.mounts)-1]
		if err := m.unmount(mt.target); err != nil {
			errs = append(errs, err)
			// Leave it in the list no longer: it is read-only or lost.
			m.mounts = m.mounts[:len(m.mounts)-1]
		}
	}
	return errors.Join(errs...)
}

func modeWord(rw bool) string {
	if rw {
		return "read-write"
	}
	return "read-only"
}

package volumes

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
)

// lvmConfig makes lvm work without udev or lvmetad, never write a metadata
// backup or archive, and (read-only) never write metadata at all.
func lvmConfig(readOnly bool, vgs []string) string {
	c := `devices{obtain_device_list_from_udev=0 use_devicesfile=0 external_device_info_source="none"} ` +
		`activation{udev_sync=0 udev_rules=0 monitoring=0%s} backup{backup=0 archive=0} global{%s}`
	if !readOnly {
		return fmt.Sprintf(c, "", "")
	}
	var q []string
	for _, vg := range vgs {
		q = append(q, `"`+vg+`"`)
	}
	return fmt.Sprintf(c, " read_only_volume_list=["+strings.Join(q, ",")+"]", "metadata_read_only=1")
}

// activateLVM activates every logical volume of the volume groups found
// on the physical volumes.
func (a *Activator) activateLVM(ctx context.Context, pvs []member) bool {
	var names []string
	for _, m := range pvs {
		names = append(names, m.name)
	}
	if err := a.load("dm_mod"); err != nil {
		a.problem(pvs[0].dev, fmt.Errorf("LVM physical volumes %s: load dm_mod: %w", strings.Join(names, ", "), err))
		return false
	}
	if err := os.MkdirAll(a.path("/run/lock/lvm"), 0o755); err != nil {
		a.problem(pvs[0].dev, err)
		return false
	}
	out, err := a.Run(ctx, nil, LVM, "vgs", "--noheadings", "-o", "vg_name", "--config", lvmConfig(true, nil))
	if err != nil {
		a.problem(pvs[0].dev, fmt.Errorf("LVM physical volumes %s: lvm vgs: %v: %s", strings.Join(names, ", "), err, lastLines(out)))
		return false
	}
	vgs := strings.Fields(string(out))
	if len(vgs) == 0 {
		a.problem(pvs[0].dev, fmt.Errorf("LVM physical volumes %s hold no complete volume group: attach the volume group's other disks", strings.Join(names, ", ")))
		return false
	}
	fmt.Fprintf(a.Console, "volumes: LVM volume groups %s on %s: activating %s\n", strings.Join(vgs, ", "), strings.Join(names, ", "), modeWord(a.ReadOnly))
	before := a.mapped()
	args := append([]string{"vgchange", "-ay", "--sysinit", "--noudevsync", "--ignoremonitoring", "--config", lvmConfig(a.ReadOnly, vgs)}, vgs...)
	out, err = a.Run(ctx, nil, LVM, args...)
	made := false
	for _, dm := range a.newMapped(before) {
		made = true
		a.looked[dm] = false
		fmt.Fprintf(a.Console, "volumes: LVM logical volume %s active as /dev/%s, %s\n",
			readAttr(a.Root, dm, "dm/name"), dm, modeWord(readAttr(a.Root, dm, "ro") == "1"))
	}
	if err != nil {
		a.problem(pvs[0].dev, fmt.Errorf("LVM volume groups %s: lvm vgchange -ay: %v: %s", strings.Join(vgs, ", "), err, lastLines(out)))
	}
	return made
}

// mapped lists the device-mapper devices (dm-N).
func (a *Activator) mapped() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(a.path("/sys/class/block"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "dm-") {
			out[e.Name()] = true
		}
	}
	return out
}

func (a *Activator) newMapped(before map[string]bool) []string {
	var out []string
	for dm := range a.mapped() {
		if !before[dm] {
			out = append(out, dm)
		}
	}
	sort.Strings(out)
	return out
}

// dmByName finds the dm-N device of a device-mapper name.
func (a *Activator) dmByName(name string) string {
	ents, _ := os.ReadDir(a.path("/sys/class/block"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "dm-") && readAttr(a.Root, e.Name(), "dm/name") == name {
			return e.Name()
		}
	}
	return ""
}

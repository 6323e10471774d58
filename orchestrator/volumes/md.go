package volumes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// assembleMD assembles the arrays the members belong to, a degraded one
// too (--run): a RAID1 with one mirror left still holds the whole root.
// The console says which arrays started and which run degraded.
func (a *Activator) assembleMD(ctx context.Context, members []member) bool {
	var names []string
	for _, m := range members {
		names = append(names, m.name)
	}
	fmt.Fprintf(a.Console, "volumes: md RAID members %s: assembling %s\n", strings.Join(names, ", "), modeWord(a.ReadOnly))
	if err := a.load("md_mod", "raid1"); err != nil {
		a.problem(members[0].dev, fmt.Errorf("RAID members %s: load md_mod, raid1: %w", strings.Join(names, ", "), err))
		return false
	}
	if err := os.MkdirAll(a.path("/run/mdadm"), 0o755); err != nil {
		a.problem(members[0].dev, err)
		return false
	}
	before := a.arrays()
	args := []string{"--assemble", "--scan", "--run"}
	if a.ReadOnly {
		args = append(args, "--readonly")
	}
	out, err := a.Run(ctx, nil, Mdadm, args...)
	var started []string
	for md := range a.arrays() {
		if !before[md] {
			started = append(started, md)
		}
	}
	sort.Strings(started)
	made := false
	for _, md := range started {
		made = true
		a.looked[md] = false
		a.reportArray(md)
	}
	if err != nil && !made {
		a.problem(members[0].dev, fmt.Errorf("RAID members %s: mdadm %s: %v: %s", strings.Join(names, ", "), strings.Join(args, " "), err, lastLines(out)))
	}
	return made
}

// arrays lists the md devices that exist.
func (a *Activator) arrays() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(a.path("/sys/class/block"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "md") {
			out[e.Name()] = true
		}
	}
	return out
}

// reportArray prints an array's state: its members, and "degraded but
// used" when mirrors are missing.
func (a *Activator) reportArray(md string) {
	level := readAttr(a.Root, md, "md/level")
	disks, _ := strconv.Atoi(readAttr(a.Root, md, "md/raid_disks"))
	degraded, _ := strconv.Atoi(readAttr(a.Root, md, "md/degraded"))
	var slaves []string
	ents, _ := os.ReadDir(filepath.Join(a.path("/sys/class/block"), md, "slaves"))
	for _, e := range ents {
		slaves = append(slaves, e.Name())
	}
	sort.Strings(slaves)
	// read-auto is writable: the array turns active on the first write.
	ro := readAttr(a.Root, md, "ro") == "1" || readAttr(a.Root, md, "md/array_state") == "readonly"
	have := disks - degraded
	if degraded > 0 {
		fmt.Fprintf(a.Console, "volumes: RAID /dev/%s degraded (%d of %d members) but used: %s on %s, %s; the missing mirror is not rebuilt here\n",
			md, have, disks, level, strings.Join(slaves, ", "), modeWord(ro))
		return
	}
	fmt.Fprintf(a.Console, "volumes: RAID /dev/%s assembled (%d of %d members): %s on %s, %s\n", md, have, disks, level, strings.Join(slaves, ", "), modeWord(ro))
}

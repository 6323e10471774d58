package coldplug

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PrintBound prints a line for each device not printed yet that is worth
// naming: every PCI device with a driver, and any other device one of the
// image's modules matches, once a driver took it:
//
//	pci 0000:00:1f.2 [8086:2922] SATA controller → ahci
//	usb 1-1:1.0 [46f4:0001] mass storage → usb-storage
func (l *Loader) PrintBound() {
	for _, p := range l.order {
		d := l.devices[p]
		if d.printed {
			continue
		}
		drv := l.driver(d)
		if drv == "" || (d.bus != "pci" && len(d.modules) == 0) {
			continue
		}
		d.printed = true
		fmt.Fprintf(l.Console, "%s → %s\n", l.describe(d), drv)
	}
}

// reportUnbound prints a line for each PCI storage, network or USB
// controller that no driver took, and returns their addresses.
func (l *Loader) reportUnbound() []string {
	var out []string
	for _, p := range l.order {
		d := l.devices[p]
		if d.bus != "pci" || d.printed || l.driver(d) != "" {
			continue
		}
		class := l.pciClass(d)
		if !wantsDriver(class) {
			continue
		}
		d.printed = true
		out = append(out, d.name)
		id := fmt.Sprintf("%s [%s:%s] (class %06x, %s)", d.name, l.hexAttr(d.sysPath, "vendor"), l.hexAttr(d.sysPath, "device"), class, className(class))
		if len(d.modules) > 0 {
			fmt.Fprintf(l.Console, "coldplug: PCI device %s was not taken by %s, which matched it: see dmesg for why its probe failed\n",
				id, strings.Join(d.modules, ", "))
			continue
		}
		fmt.Fprintf(l.Console, "coldplug: no driver for PCI device %s: this kernel lacks it; see README 'Adding a driver'\n", id)
	}
	return out
}

// Unbound lists the PCI storage, network and USB controllers that no
// driver has taken, as "0000:00:05.0 [1000:0073] (RAID bus controller)".
func (l *Loader) Unbound() []string {
	var out []string
	for _, p := range l.order {
		d := l.devices[p]
		if d.bus != "pci" || l.driver(d) != "" || !wantsDriver(l.pciClass(d)) {
			continue
		}
		out = append(out, fmt.Sprintf("%s [%s:%s] (%s)", d.name, l.hexAttr(d.sysPath, "vendor"), l.hexAttr(d.sysPath, "device"), className(l.pciClass(d))))
	}
	return out
}

// describe names a device: bus, name, [vendor:device] and what it is.
func (l *Loader) describe(d *device) string {
	switch d.bus {
	case "pci":
		return fmt.Sprintf("pci %s [%s:%s] %s", d.name, l.hexAttr(d.sysPath, "vendor"), l.hexAttr(d.sysPath, "device"), className(l.pciClass(d)))
	case "usb":
		// An interface's ids are its device's (the parent folder).
		parent := filepath.Dir(d.sysPath)
		what := usbClassName(l.attr(d.sysPath, "bInterfaceClass"))
		return strings.TrimSpace(fmt.Sprintf("usb %s [%s:%s] %s", d.name, l.attr(parent, "idVendor"), l.attr(parent, "idProduct"), what))
	case "scsi":
		if t := scsiTypeName(l.attr(d.sysPath, "type")); t != "" {
			return fmt.Sprintf("scsi %s %s %s", d.name, t, strings.Join(strings.Fields(l.attr(d.sysPath, "vendor")+" "+l.attr(d.sysPath, "model")), " "))
		}
	}
	return d.bus + " " + d.name
}

func (l *Loader) attr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// hexAttr reads a sysfs hex attribute ("0x8086") as four hex digits.
func (l *Loader) hexAttr(dir, name string) string {
	return strings.TrimPrefix(l.attr(dir, name), "0x")
}

// pciClass is the device's 24-bit class code (class, subclass, prog-if).
func (l *Loader) pciClass(d *device) uint32 {
	v, err := strconv.ParseUint(strings.TrimPrefix(l.attr(d.sysPath, "class"), "0x"), 16, 32)
	if err != nil {
		return 0
	}
	return uint32(v)
}

// wantsDriver: a rescue needs a driver for storage, network and USB
// controllers (class 01, 02 and 0c03).
func wantsDriver(class uint32) bool {
	return class>>16 == 0x01 || class>>16 == 0x02 || class>>8 == 0x0c03
}

// pciClasses name the PCI classes (class and subclass) a rescue meets.
var pciClasses = map[uint32]string{
	0x0100: "SCSI storage controller", 0x0101: "IDE interface", 0x0104: "RAID bus controller",
	0x0105: "ATA controller", 0x0106: "SATA controller", 0x0107: "Serial Attached SCSI controller",
	0x0108: "Non-Volatile memory controller", 0x0180: "Mass storage controller",
	0x0200: "Ethernet controller", 0x0207: "Infiniband controller", 0x0280: "Network controller",
	0x0300: "VGA compatible controller", 0x0600: "Host bridge", 0x0601: "ISA bridge", 0x0604: "PCI bridge",
	0x0680: "Bridge", 0x0780: "Communication controller", 0x0880: "System peripheral",
	0x0c03: "USB controller", 0x0c05: "SMBus", 0x00ff: "Unclassified device",
}

func className(class uint32) string {
	if n, ok := pciClasses[class>>8]; ok {
		return n
	}
	return fmt.Sprintf("class %04x", class>>8)
}

func usbClassName(hex string) string {
	switch hex {
	case "08":
		return "mass storage"
	case "09":
		return "hub"
	case "02", "0a":
		return "communications"
	case "03":
		return "HID"
	}
	return ""
}

// scsiTypeName names the SCSI peripheral types of disks and CD-ROMs.
func scsiTypeName(t string) string {
	switch t {
	case "0":
		return "disk"
	case "5":
		return "cd/dvd"
	case "14":
		return "disk (RBC)"
	}
	return ""
}

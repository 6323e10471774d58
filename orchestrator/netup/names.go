package netup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PredictableNames returns the names systemd-udevd would give the NIC the
// rescue kernel calls ifname (sysClassNet is /sys/class/net): a master's
// configuration names its NICs so (eno1, ens3, enp1s0, enx525400123456),
// while the rescue image, without udev, has the kernel's eth0, eth1.
// Onboard (eno, from the ACPI or SMBIOS index), hotplug slot (ens), PCI
// path (enp) and MAC (enx) names are computed, for PCI NICs in PCI
// domain 0, as systemd's net_id does.
func PredictableNames(sysClassNet, ifname string) []string {
	dir := filepath.Join(sysClassNet, ifname)
	var names []string
	suffix := ""
	if p := readTrim(filepath.Join(dir, "dev_port")); p != "" && p != "0" {
		suffix = "d" + p
	}
	dev, err := filepath.EvalSymlinks(filepath.Join(dir, "device"))
	if err == nil && !isPCIAddress(filepath.Base(dev)) && isPCIAddress(filepath.Base(filepath.Dir(dev))) {
		// virtio_net's device is the virtio device (virtio2), whose
		// parent is the PCI function udev names the NIC after.
		dev = filepath.Dir(dev)
	}
	if err == nil {
		for _, idx := range []string{"acpi_index", "index"} {
			if n, err := strconv.Atoi(readTrim(filepath.Join(dev, idx))); err == nil && n > 0 {
				names = append(names, fmt.Sprintf("eno%d%s", n, suffix))
				break
			}
		}
		var domain, bus, slot, fn int
		if k, _ := fmt.Sscanf(filepath.Base(dev), "%x:%x:%x.%x", &domain, &bus, &slot, &fn); k == 4 && domain == 0 {
			f := ""
			if fn > 0 {
				f = fmt.Sprintf("f%d", fn)
			}
			if s := hotplugSlot(filepath.Join(sysClassNet, "..", "..", "bus", "pci", "slots"), fmt.Sprintf("%04x:%02x:%02x", domain, bus, slot)); s != "" {
				names = append(names, "ens"+s+f+suffix)
			}
			names = append(names, fmt.Sprintf("enp%ds%d%s%s", bus, slot, f, suffix))
		}
	}
	if mac := readTrim(filepath.Join(dir, "address")); mac != "" {
		names = append(names, "enx"+strings.ReplaceAll(mac, ":", ""))
	}
	return names
}

// hotplugSlot returns the name of the PCI hotplug slot at address
// (domain:bus:slot), "" if none.
func hotplugSlot(slots, address string) string {
	ents, _ := os.ReadDir(slots)
	for _, e := range ents {
		if readTrim(filepath.Join(slots, e.Name(), "address")) == address {
			return e.Name()
		}
	}
	return ""
}

// isPCIAddress reports whether s is a PCI function address like 0000:00:03.0.
func isPCIAddress(s string) bool {
	var domain, bus, slot, fn int
	k, _ := fmt.Sscanf(s, "%x:%x:%x.%x", &domain, &bus, &slot, &fn)
	return k == 4
}

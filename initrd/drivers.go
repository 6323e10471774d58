package initrd

import (
	"fmt"
	"sort"
	"strings"
)

// Drivers are the device drivers the image carries for the machines a
// master runs on. The boot loads only those the machine's devices ask for
// (package coldplug matches /sys modaliases against modules.alias), so
// carrying many costs image size, not boot time.
var Drivers = []string{
	// Storage controllers: SATA/IDE, RAID and SAS HBAs of physical
	// servers (Dell PERC, Broadcom/LSI, HPE Smart Array), NVMe, and the
	// disks of hypervisors and clouds (KVM, VMware, Hyper-V, Xen).
	"ahci", "ata_piix", "megaraid_sas", "mpt3sas", "mptsas", "smartpqi", "hpsa", "sym53c8xx",
	"nvme", "virtio_blk", "virtio_scsi", "vmw_pvscsi", "hv_storvsc", "xen_blkfront",
	// SCSI disks and CD-ROMs behind those controllers.
	"sd_mod", "sr_mod",
	// USB host controllers and USB mass storage (a backup on a stick).
	"xhci_pci", "ehci_pci", "usb_storage", "uas",
	// Network cards: Intel, Broadcom, Mellanox, and the virtual NICs of
	// VMware, AWS, GCP, Hyper-V and KVM.
	"e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en", "tg3", "mlx5_core",
	"vmxnet3", "ena", "gve", "hv_netvsc", "virtio_net",
	// The VM's own devices: virtio's PCI transport, its console, and
	// QEMU's fw_cfg (the Ignition config in a VM).
	"virtio_pci", "virtio_console", "qemu_fw_cfg",
}

// FilesystemModules are the modules each filesystem type the boot mounts
// needs (the type as the superblock probe names it). The boot loads them
// before the first mount of that type: they have no modalias to match, and
// loading all of them at every boot costs seconds under emulation.
var FilesystemModules = map[string][]string{
	"ext4":    {"ext4"},
	"xfs":     {"xfs"},
	"vfat":    {"vfat", "nls_cp437", "nls_ascii", "nls_utf8"},
	"iso9660": {"isofs"},
}

// filesystemModules lists FilesystemModules' modules, sorted.
func filesystemModules() []string {
	var out []string
	for _, mods := range FilesystemModules {
		out = append(out, mods...)
	}
	sort.Strings(out)
	return out
}

// OnDemandModules are carried for the steps that need them (bonds, VLANs,
// device-mapper, md RAID, LUKS and the ciphers dm-crypt asks the kernel
// for: xts wraps ecb) and loaded by those steps only.
var OnDemandModules = []string{"bonding", "8021q", "dm_mod", "dm_crypt", "raid1", "md_mod", "xts", "ecb", "aesni_intel", "algif_skcipher"}

// CloudLacks are the Drivers that Debian's cloud kernel
// (linux-image-cloud-amd64) does not have: it drives VMs only.
var CloudLacks = []string{
	"ahci", "megaraid_sas", "mpt3sas", "mptsas", "smartpqi", "hpsa", "sym53c8xx",
	"xhci_pci", "ehci_pci", "usb_storage", "uas",
	"e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en", "tg3",
}

// IsCloudKernel reports whether a kernel version is Debian's cloud flavour.
func IsCloudKernel(version string) bool { return strings.HasSuffix(version, "-cloud-amd64") }

// DriversFor returns the drivers an image for the kernel version carries:
// Drivers, less CloudLacks for a cloud kernel.
func DriversFor(version string) []string {
	if !IsCloudKernel(version) {
		return Drivers
	}
	lacks := map[string]bool{}
	for _, m := range CloudLacks {
		lacks[m] = true
	}
	var out []string
	for _, m := range Drivers {
		if !lacks[m] {
			out = append(out, m)
		}
	}
	return out
}

// checkPresent fails when the kernel lacks any of the modules: an image
// that silently drops a driver does not boot the machines it is for.
func checkPresent(k *Kmods, version string, modules []string) error {
	var missing []string
	for _, m := range modules {
		if !k.Has(m) {
			missing = append(missing, ModName(m))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	hint := "use a kernel that has them (Debian's generic kernel: make kernel) or leave them out of the list"
	if IsCloudKernel(version) {
		hint = "Debian's cloud kernel drives VMs only: build with the generic kernel (make kernel, the default KERNEL_FLAVOUR=generic)"
	}
	return fmt.Errorf("initrd: kernel %s lacks the modules %s: %s", version, strings.Join(missing, ", "), hint)
}

package qemu_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/initrd"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// machine is one row of the hardware matrix: the verify role boots with the
// master's root and the backup volume on a storage controller and a NIC
// of that kind, and must end in VERIFY-OK after the console showed each
// driver taking its device.
type machine struct {
	name string // subtest name
	// Storage and NIC are what the README table says (QEMU device, and
	// the real hardware it stands for).
	storage, nic, standsFor string
	// controller adds the storage controller (QEMU -device), if the
	// machine does not have it built in.
	controller []string
	// rootDev and backupDev attach the two disks (qemu.Disk.Device).
	rootDev, backupDev string
	// nicDev is the NIC's QEMU -device.
	nicDev string
	// drivers are the Linux drivers the console must show taking a
	// device ("… → ahci").
	drivers []string
	// status replaces the table's "boots to VERIFY-OK" when the row
	// proves less (says what and why).
	status string
}

// machines is the hardware matrix. Every row boots q35 (whose ICH9 AHCI
// controller is always there); the README table is rendered from it.
var machines = []machine{
	{name: "ahci-e1000e", storage: "AHCI SATA (q35's ICH9, `ide-hd`)", nic: "Intel 82574L (`e1000e`)",
		standsFor: "onboard SATA of most servers; Intel gigabit NICs (igb is carried, tested through e1000e: QEMU 7.2 has no igb)",
		rootDev:   "ide-hd,bus=ide.0", backupDev: "ide-hd,bus=ide.1", nicDev: "e1000e",
		drivers: []string{"ahci", "sd", "e1000e"}},
	{name: "megasas-e1000", storage: "MegaRAID SAS (`megasas-gen2`)", nic: "Intel 82540EM (`e1000`)",
		standsFor:  "Dell PERC, Broadcom/LSI MegaRAID; older Intel NICs and VMware's e1000",
		controller: []string{"-device", "megasas-gen2,id=hba"},
		rootDev:    "scsi-hd,bus=hba.0,scsi-id=0", backupDev: "scsi-hd,bus=hba.0,scsi-id=1", nicDev: "e1000",
		drivers: []string{"megaraid_sas", "sd", "e1000"}},
	{name: "mptsas-vmxnet3", storage: "LSI SAS1068 (`mptsas1068`)", nic: "VMware VMXNET3 (`vmxnet3`)",
		standsFor:  "LSI Fusion-MPT SAS HBAs, VMware's LSI Logic SAS; VMware VMs",
		controller: []string{"-device", "mptsas1068,id=hba"},
		// Linux 6.1's mptsas takes QEMU 7.2's emulated SAS1068 but its
		// SAS discovery finds no disk behind it (on q35 and on pc, after
		// minutes): the disks are on AHCI in this boot.
		rootDev: "ide-hd,bus=ide.0", backupDev: "ide-hd,bus=ide.1", nicDev: "vmxnet3",
		drivers: []string{"mptsas", "vmxnet3"},
		status:  "`mptsas` takes the controller and the boot reaches VERIFY-OK (`TestMachines/mptsas-vmxnet3`), but Linux 6.1's mptsas discovers no disk behind QEMU 7.2's emulated SAS1068, so a root or backup behind one is not proven; root and backup are on AHCI in that boot"},
	{name: "lsi-virtionet", storage: "LSI 53C895A SCSI (`lsi53c895a`)", nic: "virtio-net (`virtio-net-pci`)",
		standsFor:  "Symbios/LSI parallel SCSI (older VMware and QEMU guests); KVM, OpenStack",
		controller: []string{"-device", "lsi53c895a,id=hba"},
		rootDev:    "scsi-hd,bus=hba.0,scsi-id=0", backupDev: "scsi-hd,bus=hba.0,scsi-id=1", nicDev: "virtio-net-pci",
		drivers: []string{"sym53c8xx", "sd", "virtio_net"}},
	{name: "pvscsi-vmxnet3", storage: "VMware PVSCSI (`pvscsi`)", nic: "VMware VMXNET3 (`vmxnet3`)",
		standsFor:  "VMware VMs with the paravirtual SCSI controller",
		controller: []string{"-device", "pvscsi,id=hba"},
		rootDev:    "scsi-hd,bus=hba.0,scsi-id=0", backupDev: "scsi-hd,bus=hba.0,scsi-id=1", nicDev: "vmxnet3",
		drivers: []string{"vmw_pvscsi", "sd", "vmxnet3"}},
	{name: "nvme-virtionet", storage: "NVMe (`nvme`)", nic: "virtio-net (`virtio-net-pci`)",
		standsFor: "NVMe SSDs of current servers; AWS Nitro and GCP disks",
		rootDev:   "nvme,serial=root", backupDev: "nvme,serial=backup", nicDev: "virtio-net-pci",
		drivers: []string{"nvme", "virtio_net"}},
	{name: "virtioscsi-e1000", storage: "virtio-scsi (`virtio-scsi-pci`)", nic: "Intel 82540EM (`e1000`)",
		standsFor:  "KVM, OpenStack and GCP disks on virtio-scsi",
		controller: []string{"-device", "virtio-scsi-pci,id=hba"},
		rootDev:    "scsi-hd,bus=hba.0,scsi-id=0", backupDev: "scsi-hd,bus=hba.0,scsi-id=1", nicDev: "e1000",
		drivers: []string{"virtio-pci", "virtio_scsi", "sd", "e1000"}},
	{name: "usb-e1000e", storage: "backup on a USB stick (`usb-storage` behind `qemu-xhci`), root on AHCI", nic: "Intel 82574L (`e1000e`)",
		standsFor:  "a backup brought on a USB stick to any machine with USB 3 (xHCI)",
		controller: []string{"-device", "qemu-xhci,id=xhci"},
		rootDev:    "ide-hd,bus=ide.0", backupDev: "usb-storage,bus=xhci.0", nicDev: "e1000e",
		drivers: []string{"xhci_hcd", "usb-storage", "sd", "e1000e"}},
}

// notYet are the layouts the README table says are not supported yet.
var notYet = [][2]string{
	{"LUKS unlocked by TPM2, Tang (clevis) or FIDO2; md RAID 0/5/6/10; LVM thin, cache or RAID logical volumes", "not supported: the image unlocks LUKS with a passphrase or key file only, assembles RAID1 only (`raid1`), and activates linear and striped logical volumes (`dm_mod`); the console names the volume it could not open"},
	{"network: bond modes other than active-backup and 802.3ad, teams, bridges, DHCP; an 802.3ad bond with an LACP partner, IPv6", "not supported (the first four); set up but not booted here (the lab has no LACP partner, and its rows are IPv4)"},
	{"igb, ixgbe, i40e, ice, bnxt_en, tg3, mlx5_core, ena, gve, hv_netvsc; smartpqi, hpsa, mpt3sas, hv_storvsc, xen-blkfront, ata_piix, ehci_pci, uas", "drivers carried and loaded by modalias; no QEMU device to boot them with"},
}

const hwPlan = `version: 1
cluster: {name: lab, domain: lab.example}
survivor: master-0
members:
- {name: master-0, peerURL: "https://192.0.2.10:2380", ip: 192.0.2.10}
- {name: master-1, peerURL: "https://192.0.2.11:2380"}
- {name: master-2, peerURL: "https://192.0.2.12:2380"}
`

var hwTimes sync.Map // machine name -> [2]time.Duration{first line, first line to disks}

// TestMachines boots the verify role on each machine of the matrix. The
// console must name each device's driver, bring the member's address up on
// the NIC, list the disks, find root and backup, and end in VERIFY-OK;
// the root disk may not change, the backup volume only gains the survey.
func TestMachines(t *testing.T) {
	if initrd.IsCloudKernel(lab.report.Initrd.KernelVersion) {
		t.Fatalf("the image's kernel %s is Debian's cloud kernel, which drives VMs only: the hardware matrix needs the generic kernel (make kernel)", lab.report.Initrd.KernelVersion)
	}
	cfg, err := ignition.Build(ignition.Options{Plan: []byte(hwPlan), Role: ignition.Role{Role: ignition.RoleVerify, Member: "master-0"}})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := writeConfig(t, cfg)
	start := time.Now()
	for _, mc := range machines {
		t.Run(mc.name, func(t *testing.T) {
			backupDisk, rootDisk := labDisks(t)
			rootBefore, backupBefore := qemu.FileHash(t, rootDisk), qemu.Ext4Tree(t, backupDisk)
			opts := append(bootOptions(t, "pxe"),
				qemu.WithName("hw-"+mc.name), qemu.WithAccel(lab.accel), qemu.WithTimeout(5*time.Minute),
				qemu.WithIgnition(cfgPath),
				qemu.WithDevices(mc.controller...),
				qemu.WithDisk(rootDisk, qemu.Disk{Device: mc.rootDev}),
				qemu.WithDisk(backupDisk, qemu.Disk{Device: mc.backupDev}),
				qemu.WithNetwork("-device", mc.nicDev+",mac=52:54:00:12:34:56"))
			vm := qemu.Start(t, opts...)
			first, err := vm.Expect("etcd-rescue "+testVersion+" starting", 3*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			disks, err := vm.Expect("disks: ", 3*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			expectToEnd(t, vm, 3*time.Minute, "VERIFY-OK snapshot_2026-01-02_030405.db", "etcd-rescue: powering off")
			out := vm.Console()
			for _, drv := range mc.drivers {
				if !regexp.MustCompile(`(?m)^(pci|usb|scsi|virtio) \S+ .*→ ` + regexp.QuoteMeta(drv) + `\r?$`).MatchString(out) {
					t.Errorf("the console shows no device taken by %s", drv)
				}
			}
			for _, re := range []string{
				`network: \S+ 192\.0\.2\.10/24 up`,
				`disks: .*label=backup`,
				`root: \S+ \(ext4.*mounted on /run/etcd-rescue/root read-only`,
			} {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("the console lacks %s", re)
				}
			}
			if strings.Contains(out, "coldplug: no driver") || strings.Contains(out, "was not taken") {
				t.Errorf("a controller got no driver")
			}
			if qemu.FileHash(t, rootDisk) != rootBefore {
				t.Errorf("verify changed the master's root disk")
			}
			surveyAdded(t, backupBefore, backupDisk, "master-0")
			hwTimes.Store(mc.name, [2]time.Duration{first, disks - first})
			t.Logf("%s: first line %s, first line to disks listed %s (%s)", mc.name, first.Round(10*time.Millisecond), (disks - first).Round(10*time.Millisecond), lab.accel)
		})
	}
	var b strings.Builder
	for _, mc := range machines {
		if v, ok := hwTimes.Load(mc.name); ok {
			d := v.([2]time.Duration)
			fmt.Fprintf(&b, "  %-18s first line %5.2fs, to disks listed %5.2fs\n", mc.name, d[0].Seconds(), d[1].Seconds())
		}
	}
	fmt.Printf("hardware matrix (%s): %d boots in %s\n%s", lab.accel, len(machines), time.Since(start).Round(time.Second), b.String())
}

var update = flag.Bool("update", false, "rewrite README.md's machines table from the matrix")

const (
	tableStart = "<!-- machines table: generated from test/qemu/hw_test.go by `go test ./test/qemu -run TestMachinesTable -update` -->\n"
	tableEnd   = "<!-- end of machines table -->\n"
)

// machinesTable renders the README table from the matrix.
func machinesTable() string {
	var b strings.Builder
	b.WriteString("| storage | NIC | stands for | drivers the console shows | status |\n|---|---|---|---|---|\n")
	for _, mc := range machines {
		var drv []string
		for _, d := range mc.drivers {
			drv = append(drv, "`"+d+"`")
		}
		status := mc.status
		if status == "" {
			status = fmt.Sprintf("boots to VERIFY-OK in `make test` (`TestMachines/%s`)", mc.name)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mc.storage, mc.nic, mc.standsFor, strings.Join(drv, ", "), status)
	}
	b.WriteString(layoutRows())
	b.WriteString(networkTable())
	for _, n := range notYet {
		fmt.Fprintf(&b, "| %s | | | | %s |\n", n[0], n[1])
	}
	return b.String()
}

// TestMachinesTable checks that README.md's machines table is the one the
// matrix renders; -update rewrites it.
func TestMachinesTable(t *testing.T) {
	readme := filepath.Join(lab.root, "README.md")
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	i, j := bytes.Index(raw, []byte(tableStart)), bytes.Index(raw, []byte(tableEnd))
	if i < 0 || j < i {
		t.Fatalf("README.md has no machines table between %q and %q", strings.TrimSpace(tableStart), strings.TrimSpace(tableEnd))
	}
	want := machinesTable()
	got := string(raw[i+len(tableStart) : j])
	if got == want {
		return
	}
	if !*update {
		t.Fatalf("README.md's machines table is not the matrix's; run `go test ./test/qemu -run TestMachinesTable -update`.\nwant:\n%s\ngot:\n%s", want, got)
	}
	out := append(append(append([]byte(nil), raw[:i+len(tableStart)]...), want...), raw[j:]...)
	if err := os.WriteFile(readme, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

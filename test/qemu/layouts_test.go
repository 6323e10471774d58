package qemu_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vincent-petithory/dataurl"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/roles"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// layout is one row of the root-layout matrix: the master's root sits on
// LVM, md RAID1 or LUKS2, and the role must find it there.
type layout struct {
	name string
	// what and standsFor are the README table's words.
	what, standsFor string
	// role is the role booted; restore rows stage a real survivor.
	role string
	// controller and devs attach the layout's disks (devs[i] for disk i,
	// qemu.Disk.Device; "" is virtio-blk) and, last, the backup volume.
	controller []string
	devs       []string
	// make turns the root filesystem image into the layout's disks and
	// returns a function that reads the root filesystem back from them.
	make func(t *testing.T, rootFS string) (disks []string, readBack func(t *testing.T) []string)
	// luks adds members[].luks.passphraseFile and the file to the config.
	luks bool
	// xfs makes the verify root XFS instead of ext4.
	xfs bool
	// want are console lines (regexps, after the UUID is put in for
	// {uuid}) and the marker the boot must end with.
	want   []string
	marker string
}

const luksPassphrase = "correct-horse-battery"

var luksUUID string // of the last LUKS disk made (one test at a time)

func lvmLayout(t *testing.T, fs string) ([]string, func(*testing.T) []string) {
	disk, off := lvmDisk(t, fs)
	size := fileSize(t, fs)
	return []string{disk}, func(t *testing.T) []string { return []string{extract(t, disk, off, size)} }
}

func raidLayout(members int) func(t *testing.T, fs string) ([]string, func(*testing.T) []string) {
	return func(t *testing.T, fs string) ([]string, func(*testing.T) []string) {
		uuid := [16]byte{0xe7, 0xcd, 0x12, 0x34}
		var disks []string
		for i := 0; i < 2; i++ {
			disks = append(disks, raidMember(t, fs, uuid, i))
		}
		size := fileSize(t, fs)
		disks = disks[:members]
		return disks, func(t *testing.T) []string {
			var out []string
			for _, d := range disks {
				out = append(out, extract(t, d, mdDataOffset*512, size))
			}
			return out
		}
	}
}

func luksLayout(token string) func(t *testing.T, fs string) ([]string, func(*testing.T) []string) {
	return func(t *testing.T, fs string) ([]string, func(*testing.T) []string) {
		disk, uuid := luksDisk(t, fs, luksPassphrase, token)
		luksUUID = uuid
		return []string{disk}, nil
	}
}

var layouts = []layout{
	{name: "lvm-ext4", what: "root on an LVM2 logical volume (ext4)", standsFor: "the default install of RHEL, CentOS and Ubuntu (most kubeadm masters)",
		role: ignition.RoleVerify, make: lvmLayout,
		want: []string{`volumes: LVM logical volume ertest\S+-root active as /dev/dm-0, read-only`, `root: dm-0 \(ext4.*mounted on /run/etcd-rescue/root read-only`}, marker: "VERIFY-OK"},
	{name: "lvm-xfs", what: "root on an LVM2 logical volume (XFS)", standsFor: "RHEL's default filesystem on LVM",
		role: ignition.RoleVerify, make: lvmLayout, xfs: true,
		want: []string{`volumes: LVM logical volume ertest\S+-root active as /dev/dm-0, read-only`, `root: dm-0 \(xfs label=root.*mounted on /run/etcd-rescue/root read-only`}, marker: "VERIFY-OK"},
	{name: "raid1", what: "root on md RAID1, both mirrors", standsFor: "RHCOS boot-disk mirroring, software RAID1 servers",
		role: ignition.RoleVerify, make: raidLayout(2),
		want: []string{`volumes: RAID /dev/md\d+ assembled \(2 of 2 members\): raid1 on vda, vdb, read-only`, `root: md\d+ \(ext4.*read-only`}, marker: "VERIFY-OK"},
	{name: "raid1-degraded", what: "root on md RAID1, one mirror missing", standsFor: "a mirrored master that lost a disk",
		role: ignition.RoleVerify, make: raidLayout(1),
		want: []string{`volumes: RAID /dev/md\d+ degraded \(1 of 2 members\) but used: raid1 on vda, read-only`, `root: md\d+ \(ext4.*read-only`}, marker: "VERIFY-OK"},
	{name: "luks2-passphrase", what: "root on LUKS2, passphrase from the plan (`members[].luks.passphraseFile`)", standsFor: "RHCOS and RHEL disk encryption with a passphrase",
		role: ignition.RoleVerify, make: luksLayout(""), luks: true,
		want: []string{`volumes: LUKS volume /dev/vda \(UUID {uuid}\) opened read-only as /dev/mapper/luks-{uuid} \(/dev/dm-0\) with the key from members\[\]\.luks\.passphraseFile /etc/etcd-rescue/luks\.passphrase`, `root: dm-0 \(ext4.*read-only`}, marker: "VERIFY-OK"},
	{name: "luks2-tpm2-nokey", what: "root on LUKS2 bound to TPM2, no key given", standsFor: "RHCOS disk encryption bound to a TPM2 or Tang",
		role: ignition.RoleVerify, make: luksLayout(`{"type":"systemd-tpm2","keyslots":["0"]}`),
		want:   []string{`LUKS volume /dev/vda \(UUID {uuid}\) is bound to TPM2, which this image does not unlock; give its passphrase .* etcd-rescue\.luks\.passphrase=TEXT`},
		marker: "VERIFY-FAILED"},
	{name: "restore-ahci-lvm", what: "restore onto a root on LVM2 (ext4)", standsFor: "a kubeadm master on RHEL/Ubuntu with onboard SATA",
		role: ignition.RoleRestore, make: lvmLayout, devs: []string{"ide-hd,bus=ide.0", "ide-hd,bus=ide.1"},
		want: []string{`volumes: LVM logical volume ertest\S+-root active as /dev/dm-0, read-write`, `root: dm-0 \(ext4.*read-write`}, marker: "RESTORE-OK"},
	{name: "restore-megasas-raid1", what: "restore onto a root on md RAID1", standsFor: "a mirrored master behind a PERC/MegaRAID HBA",
		role: ignition.RoleRestore, make: raidLayout(2), controller: []string{"-device", "megasas-gen2,id=hba"},
		devs: []string{"scsi-hd,bus=hba.0,scsi-id=0", "scsi-hd,bus=hba.0,scsi-id=1", "scsi-hd,bus=hba.0,scsi-id=2"},
		// The three SCSI disks probe in any order: the mirrors are two of sda–sdc.
		want: []string{`volumes: RAID /dev/md\d+ assembled \(2 of 2 members\): raid1 on sd[a-c], sd[a-c], read-write`, `root: md\d+ \(ext4.*read-write`}, marker: "RESTORE-OK"},
}

// TestLayouts boots each layout row: the verify rows must find the root
// on its layout and change no disk; the restore rows must restore onto it,
// and the restore's files must be on the volume when the host reads it
// back afterwards (on both mirrors of a RAID1).
func TestLayouts(t *testing.T) {
	if err := qemu.RequireTools("lvm", "mdadm", "cryptsetup", "losetup", "mkfs.xfs", "debugfs"); err != nil {
		t.Fatal(err)
	}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			start := time.Now()
			var rootFS, backupDisk string
			var planYAML []byte
			switch l.role {
			case ignition.RoleRestore:
				rootFS, backupDisk, planYAML = survivorDisks(t)
			default:
				var root string
				backupDisk, root = labDisks(t)
				rootFS = root
				if l.xfs {
					rootFS = xfsImage(t)
				}
				// No member IP: these boots have no NIC to wait for.
				planYAML = []byte(labPlan)
				if l.luks {
					planYAML = []byte(strings.Replace(labPlan, `2380"}`, `2380", luks: {passphraseFile: /etc/etcd-rescue/luks.passphrase}}`, 1))
				}
			}
			disks, readBack := l.make(t, rootFS)
			role := ignition.Role{Role: l.role, Member: "master-0"}
			if l.role == ignition.RoleRestore {
				role.Member = "" // the survivor
			}
			var files map[string][]byte
			if l.luks {
				files = map[string][]byte{"/etc/etcd-rescue/luks.passphrase": []byte(luksPassphrase + "\n")}
			}
			cfg, err := ignition.Build(ignition.Options{Plan: planYAML, Role: role, Files: files})
			if err != nil {
				t.Fatal(err)
			}
			if l.role == ignition.RoleRestore {
				cfg = addFile(t, cfg, roles.SignerTokensFile, []byte(`{"tokens":{}}`))
			}
			all := append(append([]string(nil), disks...), backupDisk)
			before := hashes(t, all)
			backupTree := qemu.Ext4Tree(t, backupDisk)
			opts := append(bootOptions(t, "pxe"),
				qemu.WithName("layout-"+l.name), qemu.WithAccel(lab.accel), qemu.WithTimeout(8*time.Minute),
				qemu.WithIgnition(writeConfig(t, cfg)), qemu.WithDevices(l.controller...))
			for i, d := range all {
				dev := ""
				if i < len(l.devs) {
					dev = l.devs[i]
				}
				if i == len(all)-1 && len(l.devs) > 0 {
					dev = l.devs[len(l.devs)-1]
				}
				opts = append(opts, qemu.WithDisk(d, qemu.Disk{Device: dev}))
			}
			vm := qemu.Start(t, opts...)
			expectToEnd(t, vm, 6*time.Minute, l.marker, "etcd-rescue: powering off")
			out := vm.Console()
			for _, re := range l.want {
				re = strings.ReplaceAll(re, "{uuid}", regexp.QuoteMeta(luksUUID))
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("the console lacks %s", re)
				}
			}
			if l.marker == "VERIFY-FAILED" && !regexp.MustCompile(`VERIFY-FAILED: .*LUKS volume /dev/vda`).MatchString(out) {
				t.Errorf("the failure marker does not name the LUKS volume")
			}
			after := hashes(t, all)
			if l.role == ignition.RoleVerify {
				// The root's volumes stay byte for byte; the backup volume
				// only gains the survey a verify that ran writes beside it.
				for i := range all[:len(all)-1] {
					if before[i] != after[i] {
						t.Errorf("a read-only verify changed %s", filepath.Base(all[i]))
					}
				}
				if l.marker == "VERIFY-OK" {
					surveyAdded(t, backupTree, backupDisk, role.Member)
				} else if before[len(all)-1] != after[len(all)-1] {
					t.Errorf("a failed verify changed the backup volume")
				}
			} else {
				if after[len(all)-1] != before[len(all)-1] {
					t.Errorf("the restore changed the backup volume")
				}
				roots := readBack(t)
				for i, img := range roots {
					// The restored member's data, the old state kept aside, and the
					// recovery service the restore installs.
					if missing := ext4Missing(t, img, "/var/lib/etcd/member/snap/db", "/var/lib/etcd-rescue/backup", plan.DefaultPath, signer.UnitPath); len(missing) > 0 {
						t.Errorf("the root read back from %s lacks %v: the restore did not write the volume", filepath.Base(all[i]), missing)
					}
				}
				if len(roots) == 2 && qemu.FileHash(t, roots[0]) != qemu.FileHash(t, roots[1]) {
					t.Errorf("the two mirrors differ after the restore")
				}
			}
			layoutTimes[l.name] = time.Since(start)
			t.Logf("%s: %s (%s)", l.name, time.Since(start).Round(time.Second), lab.accel)
		})
	}
}

var layoutTimes = map[string]time.Duration{}

func hashes(t *testing.T, files []string) []string {
	var out []string
	for _, f := range files {
		out = append(out, qemu.FileHash(t, f))
	}
	return out
}

// survivorDisks stages a survivor (a real etcd cluster's member in an
// OpenShift 4.3 root, a backup, the loss) and returns its root as an ext4
// image, its backup volume and the plan.
func survivorDisks(t *testing.T) (rootFS, backupDisk string, planYAML []byte) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 100, Lost: 10})
	m := s.Member()
	p := &plan.Plan{Version: plan.Version, Cluster: plan.Cluster{Name: "lab", Domain: "lab.example"},
		Profile: profile.OpenShift43, Survivor: m.Name,
		Members: []plan.Member{m, {Name: "new-1", PeerURL: "https://192.0.2.11:2380"}}}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Room for the restored data and the signer binary the restore
	// installs.
	rootFS = qemu.Ext4Image(t, filepath.Join(t.TempDir(), "root.ext4"), s.Root, "", 256)
	backupDisk = qemu.Ext4Image(t, filepath.Join(t.TempDir(), "backup.ext4"), s.BackupDir, "backup", 64)
	return rootFS, backupDisk, raw
}

// addFile adds a file to an Ignition config.
func addFile(t *testing.T, cfg []byte, path string, data []byte) []byte {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	storage, _ := c["storage"].(map[string]any)
	if storage == nil {
		storage = map[string]any{}
		c["storage"] = storage
	}
	files, _ := storage["files"].([]any)
	storage["files"] = append(files, map[string]any{
		"path": path, "mode": 0o600, "overwrite": true,
		"contents": map[string]any{"source": dataurl.EncodeBytes(data)},
	})
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// layoutRows are the README table's rows for the layouts.
func layoutRows() string {
	var b strings.Builder
	for _, l := range layouts {
		storage := "virtio-blk"
		switch {
		case len(l.controller) > 0:
			storage = "MegaRAID SAS (`megasas-gen2`)"
		case len(l.devs) > 0:
			storage = "AHCI SATA (`ide-hd`)"
		}
		status := fmt.Sprintf("boots to %s in `make test` (`TestLayouts/%s`)", l.marker, l.name)
		if l.marker == "VERIFY-FAILED" {
			status = fmt.Sprintf("ends in VERIFY-FAILED naming the volume, its binding and how to give its passphrase (`TestLayouts/%s`)", l.name)
		}
		fmt.Fprintf(&b, "| %s, %s | | %s | | %s |\n", l.what, storage, l.standsFor, status)
	}
	return b.String()
}

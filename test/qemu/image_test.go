package qemu_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vincent-petithory/dataurl"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/image"
	"github.com/etcd-rescue/etcd-rescue/initrd"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// The image under test, built once by TestMain.
var lab struct {
	root, kernel, modules, binary, tmp string
	accel                              string
	imageDir                           string
	report                             *image.Report
	buildTime                          time.Duration
}

const testVersion = "test"

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/qemu:", err)
		code = 1
	}
	if lab.tmp != "" {
		os.RemoveAll(lab.tmp)
	}
	os.Exit(code)
}

// setup finds the kernel, builds etcd-rescue and the rescue image in every
// format, then runs the tests. A missing prerequisite fails the package:
// these tests are never skipped.
func setup(m *testing.M) (int, error) {
	root, err := initrd.FindModuleRoot("")
	if err != nil {
		return 1, err
	}
	lab.root = root
	if lab.kernel, lab.modules, err = qemu.Kernel(root); err != nil {
		return 1, err
	}
	if err := qemu.RequireTools("qemu-system-x86_64", "mkfs.ext4", "objcopy"); err != nil {
		return 1, err
	}
	if lab.tmp, err = os.MkdirTemp("", "etcd-rescue-image-test-"); err != nil {
		return 1, err
	}
	lab.binary = filepath.Join(lab.tmp, "etcd-rescue")
	if err := qemu.Build(root, "./cmd/etcd-rescue", lab.binary, qemu.BinaryFlags(testVersion)); err != nil {
		return 1, err
	}
	lab.imageDir = filepath.Join(lab.tmp, "image-a")
	start := time.Now()
	if lab.report, err = buildImage(lab.imageDir); err != nil {
		return 1, err
	}
	lab.buildTime = time.Since(start)
	var b strings.Builder
	lab.report.Print(&b)
	fmt.Printf("rescue image built in %s:\n%s", lab.buildTime.Round(time.Second), b.String())
	lab.accel = qemu.DetectAccel(lab.kernel)
	fmt.Printf("QEMU accelerator: %s\n", lab.accel)
	code := m.Run()
	var times []string
	for _, f := range bootFormats {
		if d, ok := bootTimes.Load(f); ok {
			times = append(times, fmt.Sprintf("%s %s", f, d.(time.Duration).Round(10*time.Millisecond)))
		}
	}
	fmt.Printf("boot to the orchestrator's first line (%s): %s\n", lab.accel, strings.Join(times, ", "))
	return code, nil
}

func buildImage(out string) (*image.Report, error) {
	var log bytes.Buffer
	rep, err := image.BuildRescue(context.Background(), image.Rescue{
		Initrd:  initrd.Config{Binary: lab.binary, ModulesDir: lab.modules, GoModDir: lab.root, Log: &log},
		Kernel:  lab.kernel,
		Version: testVersion,
		Format:  "all",
		Out:     out,
	})
	if err != nil {
		return nil, fmt.Errorf("build rescue image: %w\n%s", err, log.String())
	}
	return rep, nil
}

const labPlan = `version: 1
cluster: {name: lab, domain: lab.example}
survivor: master-0
members:
- {name: master-0, peerURL: "https://192.0.2.10:2380"}
- {name: master-1, peerURL: "https://192.0.2.11:2380"}
- {name: master-2, peerURL: "https://192.0.2.12:2380"}
`

// disks are the shared disk images: a backup volume and a master root.
var disks struct {
	once         sync.Once
	backup, root string
	err          error
}

// labDisks makes (once) an ext4 backup volume holding a real etcd snapshot
// (with its sha256 trailer) and a static resources tarball under etcd/, and
// an unlabelled ext4 master root holding /etc/kubernetes/manifests.
func labDisks(t *testing.T) (backupDisk, rootDisk string) {
	t.Helper()
	disks.once.Do(func() {
		src := filepath.Join(lab.tmp, "backup-tree", "etcd")
		if err := os.MkdirAll(src, 0o755); err != nil {
			disks.err = err
			return
		}
		c := etcdtest.StartCluster(t, 1)
		cli := c.Client(t)
		etcdtest.PutKeys(t, cli, 0, 200)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rc, err := cli.Snapshot(ctx)
		if err != nil {
			disks.err = err
			return
		}
		var snap bytes.Buffer
		_, err = snap.ReadFrom(rc)
		rc.Close()
		if err != nil {
			disks.err = err
			return
		}
		if err := os.WriteFile(filepath.Join(src, "snapshot_2026-01-02_030405.db"), snap.Bytes(), 0o600); err != nil {
			disks.err = err
			return
		}
		tgz, err := qemu.TarGz([2]string{"static-pod-resources/kube-apiserver-pod-3/configmaps/config/config.yaml", "apiVersion: v1\n"})
		if err != nil {
			disks.err = err
			return
		}
		if err := os.WriteFile(filepath.Join(src, "static_kuberesources_2026-01-02_030405.tar.gz"), tgz, 0o600); err != nil {
			disks.err = err
			return
		}
		disks.backup = qemu.Ext4Image(t, filepath.Join(lab.tmp, "backup.ext4"), filepath.Dir(src), "backup", 32)

		rootSrc := filepath.Join(lab.tmp, "root-tree")
		if err := os.MkdirAll(filepath.Join(rootSrc, "etc/kubernetes/manifests"), 0o755); err != nil {
			disks.err = err
			return
		}
		if err := os.WriteFile(filepath.Join(rootSrc, "etc/kubernetes/manifests/etcd-member.yaml"), []byte("kind: Pod\n"), 0o644); err != nil {
			disks.err = err
			return
		}
		disks.root = qemu.Ext4Image(t, filepath.Join(lab.tmp, "root.ext4"), rootSrc, "", 32)
	})
	if disks.err != nil {
		t.Fatalf("lab disks: %v", disks.err)
	}
	return qemu.CopyFile(t, disks.backup), qemu.CopyFile(t, disks.root)
}

// expectToEnd waits for each console line of wants in turn (each within
// timeout), then for QEMU to exit (within a minute).
func expectToEnd(t *testing.T, vm *qemu.VM, timeout time.Duration, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if _, err := vm.Expect(want, timeout); err != nil {
			t.Fatal(err)
		}
	}
	if err := vm.Wait(time.Minute); err != nil {
		t.Fatal(err)
	}
}

func writeConfig(t *testing.T, raw []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.ign")
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// bootFormats are the ways the image boots: pxe (QEMU -kernel), raw and iso
// under UEFI (OVMF), and iso under BIOS (SeaBIOS, ISOLINUX).
var bootFormats = []string{"pxe", "raw", "iso", "iso-bios"}

// bootOptions boots the image in the given format.
func bootOptions(t *testing.T, format string) []qemu.Option {
	dir := lab.imageDir
	switch format {
	case "pxe":
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			t.Fatal(err)
		}
		return []qemu.Option{qemu.WithKernel(filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img"), strings.TrimSpace(string(cmdline)))}
	case "raw":
		return []qemu.Option{qemu.WithUEFI(), qemu.WithDisk(filepath.Join(dir, "etcd-rescue.raw"), qemu.Disk{Snapshot: true, Boot: true})}
	case "iso":
		return []qemu.Option{qemu.WithUEFI(), qemu.WithCDROM(filepath.Join(dir, "etcd-rescue.iso"))}
	case "iso-bios":
		return []qemu.Option{qemu.WithCDROM(filepath.Join(dir, "etcd-rescue.iso"))}
	}
	t.Fatalf("unknown format %s", format)
	return nil
}

// TestBootVerify boots each format (the ISO under both firmwares) with a
// verify config over fw_cfg, a backup volume and a master root, and waits
// for VERIFY-OK and the power off. The root disk may not change; the backup
// volume only gains the survey file.
func TestBootVerify(t *testing.T) {
	cfg, err := ignition.Build(ignition.Options{Plan: []byte(labPlan), Role: ignition.Role{Role: ignition.RoleVerify, Member: "master-0"}})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := writeConfig(t, cfg)
	for _, format := range bootFormats {
		t.Run(format, func(t *testing.T) {
			backupDisk, rootDisk := labDisks(t)
			rootBefore, backupBefore := qemu.FileHash(t, rootDisk), qemu.Ext4Tree(t, backupDisk)
			opts := append(bootOptions(t, format),
				qemu.WithName("verify-"+format), qemu.WithAccel(lab.accel), qemu.WithTimeout(6*time.Minute),
				qemu.WithIgnition(cfgPath),
				qemu.WithDisk(backupDisk, qemu.Disk{Serial: "backup"}),
				qemu.WithDisk(rootDisk, qemu.Disk{Serial: "root"}))
			vm := qemu.Start(t, opts...)
			first, err := vm.Expect("etcd-rescue "+testVersion+" starting", 3*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: boot to the orchestrator's first line: %s (%s)", format, first.Round(10*time.Millisecond), lab.accel)
			recordBootTime(t, format, first)
			expectToEnd(t, vm, 3*time.Minute,
				"config: fw_cfg opt/com.coreos/config: role verify, member master-0",
				"root: vd",
				"mounted on /run/etcd-rescue/root read-only",
				"backup: vd",
				"VERIFY-OK snapshot_2026-01-02_030405.db",
				"etcd-rescue: powering off",
			)
			// The lab root has no data dir: the survey recommends the backup.
			if r := consoleSurvey(t, vm.Console()); r.PlanSource != "backup" {
				t.Errorf("the survey recommends %s (%s), want the backup", r.RecommendedPath, r.PlanSource)
			}
			surveyAdded(t, backupBefore, backupDisk, "master-0")
			if qemu.FileHash(t, rootDisk) != rootBefore {
				t.Errorf("verify changed the master's root disk")
			}
		})
	}
}

// TestBootBadConfigTouchesNoDisk boots with a broken config and with a
// config whose plan is invalid: the console says what is wrong, the machine
// powers off, and no disk is mounted or changed.
func TestBootBadConfigTouchesNoDisk(t *testing.T) {
	badPlan := `{"ignition":{"version":"3.4.0"},"storage":{"files":[` +
		`{"path":"/etc/etcd-rescue/plan.yaml","contents":{"source":"` + dataurl.EncodeBytes([]byte("version: 1\ncluster: {name: lab}\nsurvivor: ghost\nmembers: []\n")) + `"}},` +
		`{"path":"/etc/etcd-rescue/role.yaml","contents":{"source":"` + dataurl.EncodeBytes([]byte("role: verify\n")) + `"}}]}}`
	for _, tc := range []struct {
		name, config, want string
	}{
		{"garbage", `{"ignition": {"version": "3.4.0"`, "ETCD-RESCUE-FAILED: ignition config from fw_cfg opt/com.coreos/config: ignition config does not parse"},
		{"invalid-plan", badPlan, "ETCD-RESCUE-FAILED: ignition config from fw_cfg opt/com.coreos/config: plan /etc/etcd-rescue/plan.yaml in the ignition config: members is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backupDisk, rootDisk := labDisks(t)
			before := qemu.FileHash(t, backupDisk) + qemu.FileHash(t, rootDisk)
			opts := append(bootOptions(t, "pxe"),
				qemu.WithName("badconfig-"+tc.name), qemu.WithAccel(lab.accel), qemu.WithTimeout(4*time.Minute),
				qemu.WithIgnition(writeConfig(t, []byte(tc.config))),
				qemu.WithDisk(backupDisk, qemu.Disk{}),
				qemu.WithDisk(rootDisk, qemu.Disk{}))
			vm := qemu.Start(t, opts...)
			expectToEnd(t, vm, 3*time.Minute, tc.want, "etcd-rescue: powering off")
			if out := vm.Console(); strings.Contains(out, "mounted on") {
				t.Errorf("a disk was mounted despite the bad config")
			}
			if after := qemu.FileHash(t, backupDisk) + qemu.FileHash(t, rootDisk); after != before {
				t.Errorf("a disk changed despite the bad config")
			}
		})
	}
}

// TestImageReproducible builds the image a second time from the same inputs
// and compares every output byte for byte.
func TestImageReproducible(t *testing.T) {
	second := filepath.Join(lab.tmp, "image-b")
	rep, err := buildImage(second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outputs) != len(lab.report.Outputs) {
		t.Fatalf("second build wrote %d files, first %d", len(rep.Outputs), len(lab.report.Outputs))
	}
	for _, o := range lab.report.Outputs {
		other := filepath.Join(second, filepath.Base(o.Path))
		if a, b := qemu.FileHash(t, o.Path), qemu.FileHash(t, other); a != b {
			t.Errorf("%s differs between two builds of the same inputs", filepath.Base(o.Path))
		}
	}
	if lab.report.Initrd.Compressed > 40<<20 {
		t.Errorf("initramfs is %s compressed, over the 40 MiB budget", initrd.MiB(lab.report.Initrd.Compressed))
	}
}

var bootTimes sync.Map

// recordBootTime keeps boot-to-first-line times in the output folder.
func recordBootTime(t *testing.T, format string, d time.Duration) {
	bootTimes.Store(format, d)
	dir := filepath.Dir(qemu.OutputDir(t))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "boot-times.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s %s boot-to-first-line %s\n", time.Now().UTC().Format(time.RFC3339), format, lab.accel, d.Round(10*time.Millisecond))
}

// TestBootFailureDropsToShell boots a bad config with etcd-rescue.shell=1:
// the boot reports the failure, runs a shell on the console for the
// operator, and powers off when the shell exits.
func TestBootFailureDropsToShell(t *testing.T) {
	backupDisk, rootDisk := labDisks(t)
	cmdline, err := os.ReadFile(filepath.Join(lab.imageDir, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	vm := qemu.Start(t,
		qemu.WithName("shell"), qemu.WithAccel(lab.accel), qemu.WithTimeout(4*time.Minute),
		qemu.WithKernel(filepath.Join(lab.imageDir, "vmlinuz"), filepath.Join(lab.imageDir, "initrd.img"),
			strings.TrimSpace(string(cmdline))+" etcd-rescue.shell=1"),
		qemu.WithIgnition(writeConfig(t, []byte(`{"ignition":{"version":"3.4.0"}}`))),
		qemu.WithDisk(backupDisk, qemu.Disk{}),
		qemu.WithDisk(rootDisk, qemu.Disk{}))
	for _, want := range []string{
		"ETCD-RESCUE-FAILED: ignition config from fw_cfg opt/com.coreos/config: ignition config has no /etc/etcd-rescue/plan.yaml",
		"starting a shell",
	} {
		if _, err := vm.Expect(want, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// The shell takes a moment to start; type until it answers.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := vm.Send("ls /lib/modules\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := vm.Expect(lab.report.Initrd.KernelVersion, 5*time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no shell answered on the console; last output:\n%s", vm.Console())
		}
	}
	if strings.Contains(vm.Console(), "powering off") {
		t.Error("powered off despite etcd-rescue.shell=1")
	}
	// Leaving the shell powers the machine off.
	if err := vm.Send("exit\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect("etcd-rescue: powering off", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := vm.Wait(time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestBootConfigFromPartition passes the config on a disk labelled
// "ignition" instead of fw_cfg, as on a machine that is not a QEMU VM. The
// backup volume is attached read-only: verify says the survey could not be
// written beside it, and succeeds.
func TestBootConfigFromPartition(t *testing.T) {
	cfg, err := ignition.Build(ignition.Options{Plan: []byte(labPlan), Role: ignition.Role{Role: ignition.RoleVerify}})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "config.ign"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	configDisk := qemu.Ext4Image(t, "", src, "ignition", 8)
	backupDisk, _ := labDisks(t)
	vm := qemu.Start(t, append(bootOptions(t, "pxe"),
		qemu.WithName("config-partition"), qemu.WithAccel(lab.accel), qemu.WithTimeout(4*time.Minute),
		qemu.WithDisk(configDisk, qemu.Disk{ReadOnly: true}),
		qemu.WithDisk(backupDisk, qemu.Disk{ReadOnly: true}))...)
	expectToEnd(t, vm, 3*time.Minute,
		"config: partition vda (label ignition) /config.ign: role verify",
		"root: no master root filesystem attached",
		"no master root attached: the survey covers the backup only",
		"survey not written beside the backup: the backup volume is read-only",
		"VERIFY-OK",
		"etcd-rescue: powering off",
	)
}

// TestBootOSTreeRootAndXFS boots the verify role beside an RHCOS-like root
// (two OSTree deployments, the default one named by the boot partition's
// loader entries) and an XFS disk: the boot presents the default deployment
// with its stateroot's /var bind-mounted, read-only, and probes XFS without
// replaying its log. No disk changes but the backup volume, which gains
// the survey file.
func TestBootOSTreeRootAndXFS(t *testing.T) {
	plan := strings.Replace(labPlan, `- {name: master-0, peerURL: "https://192.0.2.10:2380"}`,
		`- {name: master-0, peerURL: "https://192.0.2.10:2380", disk: {label: root}}`, 1)
	cfg, err := ignition.Build(ignition.Options{Plan: []byte(plan), Role: ignition.Role{Role: ignition.RoleVerify, Member: "master-0"}})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for p, body := range map[string]string{
		"ostree/deploy/rhcos/deploy/aaa.0/etc/kubernetes/manifests/etcd-member.yaml": "old",
		"ostree/deploy/rhcos/deploy/bbb.0/etc/kubernetes/manifests/etcd-member.yaml": "new",
		"ostree/deploy/rhcos/var/lib/etcd/member/snap/db":                            "data",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"ostree/deploy/rhcos/deploy/aaa.0/var", "ostree/deploy/rhcos/deploy/bbb.0/var", "ostree/boot.1.1/rhcos/csum"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"ostree/boot.1":                "boot.1.1",
		"ostree/boot.1.1/rhcos/csum/0": "../../../deploy/rhcos/deploy/bbb.0",
		"ostree/boot.1.1/rhcos/csum/1": "../../../deploy/rhcos/deploy/aaa.0",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	boot := t.TempDir()
	if err := os.MkdirAll(filepath.Join(boot, "loader.1/entries"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loader.1", filepath.Join(boot, "loader")); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"ostree-1-rhcos.conf": "title RHCOS old\nversion 1\noptions ostree=/ostree/boot.1/rhcos/csum/1 rw\n",
		"ostree-2-rhcos.conf": "title RHCOS new\nversion 2\noptions ostree=/ostree/boot.1/rhcos/csum/0 rw\n",
	} {
		if err := os.WriteFile(filepath.Join(boot, "loader.1/entries", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rootDisk := qemu.Ext4Image(t, filepath.Join(t.TempDir(), "root.ext4"), root, "root", 32)
	bootDisk := qemu.Ext4Image(t, filepath.Join(t.TempDir(), "boot.ext4"), boot, "boot", 8)
	xfsDisk := filepath.Join(t.TempDir(), "scratch.xfs")
	if err := os.WriteFile(xfsDisk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(xfsDisk, 320<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.xfs", "-q", "-L", "scratch", xfsDisk).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v: %s (install xfsprogs: make deps)", err, out)
	}
	backupDisk, _ := labDisks(t)
	backupBefore := qemu.Ext4Tree(t, backupDisk)
	disks := []string{rootDisk, bootDisk, xfsDisk}
	var before []string
	for _, d := range disks {
		before = append(before, qemu.FileHash(t, d))
	}
	opts := append(bootOptions(t, "pxe"),
		qemu.WithName("ostree-xfs"), qemu.WithAccel(lab.accel), qemu.WithTimeout(4*time.Minute),
		qemu.WithIgnition(writeConfig(t, cfg)))
	for _, d := range append(disks, backupDisk) {
		opts = append(opts, qemu.WithDisk(d, qemu.Disk{}))
	}
	vm := qemu.Start(t, opts...)
	expectToEnd(t, vm, 3*time.Minute,
		"(xfs label=scratch",
		"root: OSTree deployment /ostree/deploy/rhcos/deploy/bbb.0 with its /var on /run/etcd-rescue/sysroot",
		"VERIFY-OK",
		"etcd-rescue: powering off",
	)
	if out := vm.Console(); strings.Contains(out, "look into") {
		t.Errorf("a disk could not be probed:\n%s", out)
	}
	for i, d := range disks {
		if qemu.FileHash(t, d) != before[i] {
			t.Errorf("%s changed", filepath.Base(d))
		}
	}
	surveyAdded(t, backupBefore, backupDisk, "master-0")
}

package boot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
)

const testPlan = `version: 1
cluster: {name: lab}
survivor: m0
members:
- {name: m0, peerURL: "https://10.0.0.10:2380"}
- {name: m1, peerURL: "https://10.0.0.11:2380", disk: {label: root-m1}}
`

// fakeMachine is a Machine over a temporary tree whose "mounts" are
// symlinks to per-device content directories.
type fakeMachine struct {
	*Machine
	t        *testing.T
	console  bytes.Buffer
	content  map[string]string // device path -> directory it "holds"
	calls    []string
	poweroff int
	reboot   int
	failUmnt bool
}

func newFake(t *testing.T, cmdline string) *fakeMachine {
	t.Helper()
	root := t.TempDir()
	f := &fakeMachine{t: t, content: map[string]string{}}
	for _, d := range []string{"proc", "sys/class/block", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.Machine = &Machine{
		Root:       root,
		Console:    &f.console,
		Version:    "test",
		Cmdline:    cmdline + " console=ttyS0",
		DeviceWait: 300 * time.Millisecond,
		Mount: func(source, target, fstype string, ro bool, data string) error {
			f.calls = append(f.calls, fmt.Sprintf("mount %s %s %s ro=%v %s", rel(root, source), rel(root, target), fstype, ro, data))
			dir, ok := f.content[source]
			if !ok {
				return errors.New("no such device")
			}
			if err := os.Remove(target); err != nil {
				return err
			}
			return os.Symlink(dir, target)
		},
		Unmount: func(target string) error {
			f.calls = append(f.calls, "umount "+rel(root, target))
			if f.failUmnt {
				return errors.New("device busy")
			}
			if err := os.Remove(target); err != nil {
				return err
			}
			return os.Mkdir(target, 0o755)
		},
		Bind: func(source, target string) error {
			f.calls = append(f.calls, "bind "+rel(root, target))
			if err := os.Remove(target); err != nil {
				return err
			}
			return os.Symlink(source, target)
		},
		RemountReadOnly: func(target string) error {
			f.calls = append(f.calls, "remount-ro "+rel(root, target))
			return nil
		},
		LoadModule: func(p, _ string) error {
			f.calls = append(f.calls, "insmod "+rel(root, p))
			return nil
		},
		PowerOff: func() error { f.poweroff++; return nil },
		Reboot:   func() error { f.reboot++; return nil },
	}
	return f
}

func rel(root, p string) string { return "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/") }

// addDisk adds a block device with an ext4 superblock and a content tree.
func (f *fakeMachine) addDisk(name, label string, files map[string]string) {
	f.t.Helper()
	sb := make([]byte, 4096)
	binary.LittleEndian.PutUint16(sb[1024+56:], 0xEF53)
	copy(sb[1024+104:], []byte("0123456789abcdef"))
	copy(sb[1024+120:], label)
	dev := filepath.Join(f.Root, "dev", name)
	if err := os.WriteFile(dev, sb, 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.Root, "sys/class/block", name), 0o755); err != nil {
		f.t.Fatal(err)
	}
	dir := f.t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				f.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	f.content[dev] = dir
}

func (f *fakeMachine) setFwCfg(raw []byte) {
	f.t.Helper()
	p := filepath.Join(f.Root, FwCfgConfig)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, raw, 0o444); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeMachine) mountCalls() []string {
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, "mount ") || strings.HasPrefix(c, "remount") {
			out = append(out, c)
		}
	}
	return out
}

// withRole replaces a registered role for the test.
func withRole(t *testing.T, name string, r Role, opts ...RoleOption) {
	t.Helper()
	rolesMu.Lock()
	old, had := roles[name]
	s := roleSpec{run: r}
	for _, o := range opts {
		o(&s)
	}
	roles[name] = s
	rolesMu.Unlock()
	t.Cleanup(func() {
		rolesMu.Lock()
		defer rolesMu.Unlock()
		if had {
			roles[name] = old
		} else {
			delete(roles, name)
		}
	})
}

func buildConfig(t *testing.T, plan string, role ignition.Role) []byte {
	t.Helper()
	raw, err := ignition.Build(ignition.Options{Plan: []byte(plan), Role: role, Token: []byte("tok")})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestBootRunsRoleWithBackupReadOnly(t *testing.T) {
	f := newFake(t, "")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleVerify}))
	f.addDisk("vda", "backup", map[string]string{"etcd/snapshot_2024-01-01_000000.db": "x"})
	if err := os.MkdirAll(filepath.Join(f.Root, "etc/etcd-rescue"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Root, ModulesLoadList), []byte("/lib/a.ko\n/lib/b.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got *Env
	withRole(t, "verify", func(_ context.Context, env *Env) error {
		got = env
		if _, err := os.Stat(filepath.Join(env.Backup, "snapshot_2024-01-01_000000.db")); err != nil {
			return err
		}
		fmt.Fprintln(env.Console, "VERIFY-OK")
		return nil
	}, NeedsBackup())

	if err := f.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v\n%s", err, f.console.String())
	}
	out := f.console.String()
	if !strings.HasPrefix(out, "etcd-rescue test starting\n") {
		t.Errorf("first line is not the start line:\n%s", out)
	}
	for _, want := range []string{"modules: 2 loaded", "config: fw_cfg opt/com.coreos/config: role verify", "VERIFY-OK", "powering off"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	if got == nil || got.Backup != filepath.Join(f.Root, MountBackup, "etcd") {
		t.Errorf("role env backup = %+v", got)
	}
	if got.Root != "" {
		t.Errorf("no root disk attached, but env.Root = %q", got.Root)
	}
	if f.poweroff != 1 || f.reboot != 0 {
		t.Errorf("poweroff=%d reboot=%d, want 1, 0", f.poweroff, f.reboot)
	}
	for _, c := range f.mountCalls() {
		if !strings.Contains(c, "ro=true noload") {
			t.Errorf("mount not read-only without journal replay: %s", c)
		}
	}
	if len(f.mounts) != 0 {
		t.Errorf("still mounted: %+v", f.mounts)
	}
	if f.calls[0] != "insmod /lib/a.ko" || f.calls[1] != "insmod /lib/b.ko" {
		t.Errorf("modules not loaded in list order: %v", f.calls[:2])
	}
}

func TestBootBadConfigTouchesNoDisk(t *testing.T) {
	good := buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleVerify})
	badPlan, err := ignition.Build(ignition.Options{Plan: []byte(testPlan), Role: ignition.Role{Role: ignition.RoleVerify}})
	if err != nil {
		t.Fatal(err)
	}
	// Swap the plan for one that names an unknown survivor.
	badPlan = bytes.Replace(badPlan, []byte(dataURLOf(t, good)), []byte("data:,version%3A%201%0Acluster%3A%20%7Bname%3A%20x%7D%0Asurvivor%3A%20nobody%0Amembers%3A%20%5B%5D%0A"), 1)
	for _, tc := range []struct {
		name, want string
		raw        []byte
	}{
		{"garbage", "ETCD-RESCUE-FAILED: ignition config from fw_cfg opt/com.coreos/config: ignition config does not parse", []byte("{not json")},
		{"bad plan", "ETCD-RESCUE-FAILED: ignition config from fw_cfg opt/com.coreos/config: plan /etc/etcd-rescue/plan.yaml in the ignition config: members is empty", badPlan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, "")
			f.setFwCfg(tc.raw)
			f.addDisk("vda", "backup", map[string]string{"snapshot_2024-01-01_000000.db": "x"})
			if err := f.Run(context.Background()); err == nil {
				t.Fatal("Run succeeded")
			}
			if out := f.console.String(); !strings.Contains(out, tc.want) {
				t.Errorf("console lacks %q:\n%s", tc.want, out)
			}
			if mc := f.mountCalls(); len(mc) != 0 {
				t.Errorf("disks were mounted: %v", mc)
			}
			if f.poweroff != 1 {
				t.Errorf("poweroff = %d, want 1", f.poweroff)
			}
		})
	}
}

func dataURLOf(t *testing.T, raw []byte) string {
	t.Helper()
	i := bytes.Index(raw, []byte(`"data:`))
	j := bytes.IndexByte(raw[i+1:], '"')
	return string(raw[i+1 : i+1+j])
}

func TestBootNoConfig(t *testing.T) {
	f := newFake(t, "")
	if err := f.Run(context.Background()); err == nil {
		t.Fatal("Run succeeded")
	}
	if out := f.console.String(); !strings.Contains(out, "ETCD-RESCUE-FAILED: no Ignition config found") {
		t.Errorf("console:\n%s", out)
	}
}

func TestBootConfigFromCmdlineAndPartition(t *testing.T) {
	withRole(t, "verify", func(_ context.Context, env *Env) error { return nil })
	raw := buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleVerify})

	f := newFake(t, "ignition.config.url=file:///cfg.ign")
	if err := os.WriteFile(filepath.Join(f.Root, "cfg.ign"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Boot(context.Background()); err != nil {
		t.Fatalf("cmdline config: %v\n%s", err, f.console.String())
	}

	f = newFake(t, "")
	f.addDisk("vdb", "CONFIG-2", map[string]string{"openstack/latest/user_data": string(raw)})
	if err := f.Boot(context.Background()); err != nil {
		t.Fatalf("partition config: %v\n%s", err, f.console.String())
	}
	if out := f.console.String(); !strings.Contains(out, "partition vdb (label CONFIG-2) /openstack/latest/user_data") {
		t.Errorf("console:\n%s", out)
	}

	f = newFake(t, "ignition.config.url=https://example.invalid/x.ign")
	if err := f.Boot(context.Background()); err == nil || !strings.Contains(err.Error(), "only file:///PATH") {
		t.Errorf("https config url: err = %v", err)
	}
}

func TestBootFailureUnmountsAndShell(t *testing.T) {
	withRole(t, "join", func(_ context.Context, env *Env) error {
		fmt.Fprintln(env.Console, "JOIN-FAILED: boom")
		return errors.New("boom")
	}, WritableRoot())
	f := newFake(t, "etcd-rescue.shell=1")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleJoin, Member: "m1"}))
	f.addDisk("vda", "root-m1", map[string]string{"etc/kubernetes/manifests/": ""})
	f.failUmnt = true
	shells := 0
	f.Shell = func() error { shells++; return nil }
	err := f.Run(context.Background())
	if err == nil {
		t.Fatal("Run succeeded")
	}
	out := f.console.String()
	if strings.Count(out, "FAILED") != 1 {
		t.Errorf("want exactly the role's marker line:\n%s", out)
	}
	if !strings.Contains(out, "starting a shell") || shells != 1 || f.poweroff != 1 {
		t.Errorf("want a shell, then power off (shells=%d poweroff=%d):\n%s", shells, f.poweroff, out)
	}
	want := []string{"mount /dev/vda /run/etcd-rescue/root ext4 ro=false ", "remount-ro /run/etcd-rescue/root"}
	if got := f.mountCalls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("mount calls = %q, want %q", got, want)
	}
}

func TestBootRootSearchAndReboot(t *testing.T) {
	var env *Env
	withRole(t, "restore", func(_ context.Context, e *Env) error { env = e; return nil }, WritableRoot(), NeedsBackup())
	f := newFake(t, "")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleRestore, After: ignition.AfterReboot}))
	f.addDisk("vda", "", map[string]string{"etc/kubernetes/manifests/": ""})
	f.addDisk("vdb", "data", map[string]string{"snapshot_2024-01-01_000000.db": "x"})
	if err := f.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v\n%s", err, f.console.String())
	}
	if env.Root != filepath.Join(f.Root, MountRoot) {
		t.Errorf("root = %q", env.Root)
	}
	if env.Backup != filepath.Join(f.Root, MountBackup) {
		t.Errorf("backup = %q", env.Backup)
	}
	if f.reboot != 1 || f.poweroff != 0 {
		t.Errorf("reboot=%d poweroff=%d, want 1, 0", f.reboot, f.poweroff)
	}

	// The backup is on the root: found through the plan's backup.dir.
	plan := testPlan + "backup: {dir: /home/core/assets/backup}\n"
	f = newFake(t, "")
	f.setFwCfg(buildConfig(t, plan, ignition.Role{Role: ignition.RoleRestore}))
	f.addDisk("vda", "", map[string]string{"etc/kubernetes/manifests/": "", "home/core/assets/backup/snapshot_2024-01-01_000000.db": "x"})
	if err := f.Boot(context.Background()); err != nil {
		t.Fatalf("Boot: %v\n%s", err, f.console.String())
	}
	if env.Backup != filepath.Join(f.Root, MountRoot, "home/core/assets/backup") {
		t.Errorf("backup = %q", env.Backup)
	}

	// Two roots and no hint: refuse to guess.
	f = newFake(t, "")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleRestore}))
	f.addDisk("vda", "", map[string]string{"etc/kubernetes/manifests/": ""})
	f.addDisk("vdb", "", map[string]string{"etc/kubernetes/manifests/": ""})
	if err := f.Boot(context.Background()); err == nil || !strings.Contains(err.Error(), "several filesystems look like a master root") {
		t.Errorf("two roots: err = %v", err)
	}
	if len(f.mounts) != 0 {
		t.Errorf("left mounted: %+v", f.mounts)
	}
}

func TestProbeFS(t *testing.T) {
	b := make([]byte, 64*1024)
	copy(b[0:], "XFSB")
	copy(b[108:], "rootfs")
	if fs := probeBytes(b); fs.Type != "xfs" || fs.Label != "rootfs" {
		t.Errorf("xfs: %+v", fs)
	}
	b = make([]byte, 64*1024)
	b[510], b[511] = 0x55, 0xAA
	copy(b[82:], "FAT32   ")
	copy(b[71:], "CONFIG-2   ")
	binary.LittleEndian.PutUint32(b[67:], 0x1234ABCD)
	if fs := probeBytes(b); fs.Type != "vfat" || fs.Label != "CONFIG-2" || fs.UUID != "1234-ABCD" {
		t.Errorf("vfat: %+v", fs)
	}
	if fs := probeBytes(make([]byte, 4096)); fs.Type != "" {
		t.Errorf("zeros: %+v", fs)
	}
}

// rhcosRoot adds an RHCOS-like root disk: two OSTree deployments, the
// stateroot's /var, and the boot.N symlinks; returns its content folder.
func (f *fakeMachine) rhcosRoot(name string) string {
	f.t.Helper()
	f.addDisk(name, "root", map[string]string{
		"ostree/deploy/rhcos/deploy/aaa.0/etc/kubernetes/manifests/which": "aaa",
		"ostree/deploy/rhcos/deploy/aaa.0/var/":                           "",
		"ostree/deploy/rhcos/deploy/bbb.0/etc/kubernetes/manifests/which": "bbb",
		"ostree/deploy/rhcos/deploy/bbb.0/var/":                           "",
		"ostree/deploy/rhcos/var/lib/etcd/member/snap/db":                 "data",
		"ostree/boot.1.1/rhcos/csum/":                                     "",
	})
	dir := f.content[filepath.Join(f.Root, "dev", name)]
	for link, target := range map[string]string{
		"ostree/boot.1":                "boot.1.1",
		"ostree/boot.1.1/rhcos/csum/0": "../../../deploy/rhcos/deploy/bbb.0",
		"ostree/boot.1.1/rhcos/csum/1": "../../../deploy/rhcos/deploy/aaa.0",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			f.t.Fatal(err)
		}
	}
	return dir
}

func TestBootOSTreeRoot(t *testing.T) {
	var env *Env
	withRole(t, "restore", func(_ context.Context, e *Env) error {
		env = e
		b, err := os.ReadFile(filepath.Join(e.Root, "etc/kubernetes/manifests/which"))
		if err != nil || string(b) != "bbb" {
			return fmt.Errorf("manifests of the default deployment: %q, %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(e.Root, "var/lib/etcd/member/snap/db")); err != nil {
			return fmt.Errorf("stateroot /var not under the root: %v", err)
		}
		return nil
	}, WritableRoot())
	f := newFake(t, "")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleRestore}))
	f.rhcosRoot("vda")
	f.addDisk("vdb", "boot", map[string]string{
		"loader/entries/ostree-1-rhcos.conf": "title old\nversion 1\noptions root=UUID=x ostree=/ostree/boot.1/rhcos/csum/1 rw\n",
		"loader/entries/ostree-2-rhcos.conf": "title new\nversion 2\noptions root=UUID=x ostree=/ostree/boot.1/rhcos/csum/0 rw\n",
	})
	if err := f.Boot(context.Background()); err != nil {
		t.Fatalf("Boot: %v\n%s", err, f.console.String())
	}
	if env.Root != filepath.Join(f.Root, MountSysroot) {
		t.Errorf("root = %q, want the sysroot view", env.Root)
	}
	if !strings.Contains(f.console.String(), "root: OSTree deployment /ostree/deploy/rhcos/deploy/bbb.0 with its /var on /run/etcd-rescue/sysroot") {
		t.Errorf("console:\n%s", f.console.String())
	}
	if len(f.mounts) != 0 {
		t.Errorf("left mounted: %+v", f.mounts)
	}

	// Two deployments and no boot partition: refuse to guess.
	f = newFake(t, "")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleRestore}))
	f.rhcosRoot("vda")
	if err := f.Boot(context.Background()); err == nil || !strings.Contains(err.Error(), "attach the partition labelled boot") {
		t.Errorf("no boot partition: err = %v", err)
	}
	if len(f.mounts) != 0 {
		t.Errorf("left mounted: %+v", f.mounts)
	}
}

func TestDefaultOSTreeArg(t *testing.T) {
	got, err := defaultOSTreeArg([][]byte{
		[]byte("version 3\noptions ostree=/ostree/boot.0/fedora-coreos/c/0 quiet\n"),
		[]byte("version 12\noptions ostree=/ostree/boot.0/fedora-coreos/c/1\n"),
		[]byte("version 20\noptions quiet\n"),
	})
	if err != nil || got != "/ostree/boot.0/fedora-coreos/c/1" {
		t.Errorf("defaultOSTreeArg = %q, %v", got, err)
	}
}

// TestBootRestoreFromSurvivorDataNeedsNoBackup: a restore role whose plan
// says source: survivor-data boots without a backup volume; without that
// source the same boot stops for want of one.
func TestBootRestoreFromSurvivorDataNeedsNoBackup(t *testing.T) {
	ran := false
	withRole(t, "restore", func(context.Context, *Env) error { ran = true; return nil }, WritableRoot(), NeedsBackup())
	for _, c := range []struct {
		plan    string
		wantRun bool
	}{{testPlan + "source: survivor-data\n", true}, {testPlan, false}} {
		ran = false
		f := newFake(t, "")
		f.setFwCfg(buildConfig(t, c.plan, ignition.Role{Role: ignition.RoleRestore}))
		f.addDisk("vda", "", map[string]string{"etc/kubernetes/manifests/": ""})
		err := f.Boot(context.Background())
		if ran != c.wantRun || (err == nil) != c.wantRun {
			t.Errorf("plan source %q: role ran %v, err %v\n%s", c.plan[len(testPlan):], ran, err, f.console.String())
		}
	}
}

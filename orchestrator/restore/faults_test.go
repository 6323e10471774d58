package restore_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

// fault is one bad input: it damages a copy of the scene (or the restore's
// options), and the restore must fail saying want, with the master's root
// byte for byte as it was.
type fault struct {
	name   string
	damage func(t *testing.T, s *disaster.Scene, o *restore.Options)
	want   string
}

func backupFiles(t *testing.T, s *disaster.Scene) (snap, tarball string) {
	t.Helper()
	return s.Backup.Snapshot[len(filepath.Dir(s.Backup.Snapshot))+1:], s.Backup.Resources[len(filepath.Dir(s.Backup.Resources))+1:]
}

func rewrite(t *testing.T, s *disaster.Scene, name string, f func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(s.BackupDir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func damageSnapshot(f func([]byte) []byte) func(*testing.T, *disaster.Scene, *restore.Options) {
	return func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
		snap, _ := backupFiles(t, s)
		rewrite(t, s, snap, f)
	}
}

func flipAt(frac float64, fromEnd int) func([]byte) []byte {
	return func(b []byte) []byte {
		i := int(float64(len(b)) * frac)
		if fromEnd > 0 {
			i = len(b) - fromEnd
		}
		b[i] ^= 0x5a
		return b
	}
}

func truncateTo(frac float64) func([]byte) []byte {
	return func(b []byte) []byte { return b[:int(float64(len(b))*frac)] }
}

// replaceTarball writes a resources tarball with the given entries.
func replaceTarball(entries ...tar.Header) func(*testing.T, *disaster.Scene, *restore.Options) {
	return func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
		_, name := backupFiles(t, s)
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for _, h := range entries {
			h := h
			if h.Typeflag == 0 {
				h.Typeflag = tar.TypeReg
			}
			if h.Mode == 0 {
				h.Mode = 0o644
			}
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg && h.Size > 0 && h.Size < 1<<20 {
				tw.Write(make([]byte, h.Size))
			}
		}
		tw.Flush() // a 10 GB entry is refused at its header; its body never comes
		gz.Close()
		if err := os.WriteFile(filepath.Join(s.BackupDir, name), buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// fromSurvivorData restores from the survivor's data dir after damaging it.
func fromSurvivorData(damage func(testing.TB, string)) func(*testing.T, *disaster.Scene, *restore.Options) {
	return func(t *testing.T, s *disaster.Scene, o *restore.Options) {
		o.BackupDir, o.Source = "", plan.SourceSurvivorData
		damage(t, filepath.Join(s.Root, s.Profile.DataDir))
	}
}

func withPeerURL(u string) func(*testing.T, *disaster.Scene, *restore.Options) {
	return func(_ *testing.T, _ *disaster.Scene, o *restore.Options) { o.Member.PeerURL = u }
}

// withEtcdImage sets the etcd container's image in the scene's manifest.
func withEtcdImage(image string) func(*testing.T, *disaster.Scene, *restore.Options) {
	return func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
		p := filepath.Join(s.Root, s.Profile.Manifest)
		m, err := manifest.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(m.EtcdContainer().Image), []byte(image)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadInputFailsClearlyAndChangesNothing(t *testing.T) {
	faults := []fault{
		{"snapshot byte flipped in the header", damageSnapshot(flipAt(0, 100)), "is damaged: its sha256"},
		{"snapshot byte flipped in the middle", damageSnapshot(flipAt(0.5, 0)), "is damaged: its sha256"},
		{"snapshot byte flipped in the hash trailer", damageSnapshot(flipAt(0, 5)), "is damaged: its sha256"},
		{"snapshot truncated at 10%", damageSnapshot(truncateTo(0.1)), "has no sha256 trailer"},
		{"snapshot truncated at 50%", damageSnapshot(truncateTo(0.5)), "has no sha256 trailer"},
		{"snapshot truncated by one byte", damageSnapshot(func(b []byte) []byte { return b[:len(b)-1] }), "has no sha256 trailer"},
		{"snapshot empty", damageSnapshot(func([]byte) []byte { return nil }), "is empty"},
		{"snapshot not a bbolt file", damageSnapshot(func(b []byte) []byte {
			junk := bytes.Repeat([]byte("not bbolt"), 512)[:4096]
			sum := sha256.Sum256(junk)
			return append(junk, sum[:]...)
		}), "fails etcd's integrity check"},
		{"snapshot without hash trailer", damageSnapshot(func(b []byte) []byte { return b[:len(b)-32] }), "pass --skip-hash-check"},
		{"pair timestamps do not match", func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
			_, tb := backupFiles(t, s)
			os.Rename(filepath.Join(s.BackupDir, tb), filepath.Join(s.BackupDir, "static_kuberesources_2000-01-01_000000.tar.gz"))
		}, "is incomplete"},
		{"only the snapshot of the pair", func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
			_, tb := backupFiles(t, s)
			os.Remove(filepath.Join(s.BackupDir, tb))
		}, "has no static_kuberesources_"},
		{"only the tarball of the pair", func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
			sn, _ := backupFiles(t, s)
			os.Remove(filepath.Join(s.BackupDir, sn))
		}, "has no snapshot_"},
		{"no backup at all", func(t *testing.T, s *disaster.Scene, o *restore.Options) { o.BackupDir = t.TempDir() }, "no backup in"},
		{"tarball with an absolute path", replaceTarball(tar.Header{Name: "/etc/shadow", Size: 3}), "absolute path"},
		{"tarball with ..", replaceTarball(tar.Header{Name: "static-pod-resources/../../../etc/shadow", Size: 3}), `climbs out with ".."`},
		{"tarball with an escaping symlink", replaceTarball(tar.Header{Name: "static-pod-resources/x", Typeflag: tar.TypeSymlink, Linkname: "../../../../etc"}), "points outside"},
		{"tarball with an escaping hard link", replaceTarball(tar.Header{Name: "static-pod-resources/x", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}), "hard link"},
		{"tarball with a device node", replaceTarball(tar.Header{Name: "static-pod-resources/sda", Typeflag: tar.TypeBlock, Devmajor: 8}), "device node"},
		{"tarball expanding to 10 GB", replaceTarball(tar.Header{Name: "static-pod-resources/huge", Size: 10 << 30}), "past 2147483648 bytes"},
		// The --initial-cluster and --profile flags are checked where they
		// are parsed: cmd/etcd-rescue's TestRestoreFlagsFailClearlyAndChangeNothing.
		{"member peer URL not a URL", withPeerURL("etcd-0:2380"), "must start with https://"},
		{"member without a name", func(_ *testing.T, _ *disaster.Scene, o *restore.Options) { o.Member.Name = "" }, "no member name given: pass --name"},
		{"root of no known layout", func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
			os.Rename(filepath.Join(s.Root, s.Profile.Manifest), filepath.Join(s.Root, s.Profile.Manifest+".old"))
		}, "no etcd manifest found"},
		{"manifest runs an etcd older than tested", withEtcdImage("quay.io/coreos/etcd:v3.2.32"), "etcd 3.2.32 is older than the versions"},
		{"--etcd-version newer than tested", func(_ *testing.T, _ *disaster.Scene, o *restore.Options) { o.EtcdVersion = "3.8.0" }, "etcd 3.8.0 is newer than the versions"},
		{"--etcd-version not a version", func(_ *testing.T, _ *disaster.Scene, o *restore.Options) { o.EtcdVersion = "latest" }, `"latest" is not an etcd version`},
		{"backup from a newer etcd than the master runs", withEtcdImage("registry.k8s.io/etcd:3.6.16-0"), "the backup was written by etcd 3.7 but the master runs etcd 3.6.16"},
		{"survivor-data: WAL damaged", fromSurvivorData(etcdtest.DamageWAL), "cannot be restored from: WAL"},
		{"survivor-data: backend damaged", fromSurvivorData(func(t testing.TB, dir string) {
			if err := os.Truncate(filepath.Join(dir, "member/snap/db"), 8192); err != nil {
				t.Fatal(err)
			}
		}), "cannot be restored from: backend: "},
		{"survivor-data: a damaged page the survey does not read", fromSurvivorData(damageOffSurveyPath), "fails etcd's integrity check"},
		{"survivor-data: no data dir", fromSurvivorData(func(t testing.TB, dir string) { os.RemoveAll(dir) }), "cannot be restored from: data dir: "},
		{"survivor-data online", func(_ *testing.T, _ *disaster.Scene, o *restore.Options) {
			o.BackupDir, o.Source, o.Online = "", plan.SourceSurvivorData, true
		}, "a restore from the survivor's own data runs offline"},
		{"survivor-data and a backup both given", func(_ *testing.T, _ *disaster.Scene, o *restore.Options) { o.Source = plan.SourceSurvivorData },
			"both a backup and the survivor's data dir given"},
	}
	runFaults(t, faults)
}

// runFaults runs each fault on its own copy of the OpenShift 4.3 scene.
func runFaults(t *testing.T, faults []fault) {
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			s := scene(t, profile.OpenShift43)
			var out bytes.Buffer
			o := options(s, &out)
			f.damage(t, s, &o)
			before, snap := disaster.TreeHash(t, s.Root), disaster.Snap(t, s.Root)
			err := restore.Run(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), f.want) {
				t.Fatalf("err = %v, want it to say %q\n%s", err, f.want, out.String())
			}
			if !strings.Contains(out.String(), "RESTORE-FAILED: ") {
				t.Errorf("no RESTORE-FAILED marker:\n%s", out.String())
			}
			if after := disaster.TreeHash(t, s.Root); after != before {
				t.Fatalf("a refused restore changed the root: %v", snap.Changes(t))
			}
		})
	}
}

func TestSnapshotWithoutTrailerRestoresWithSkipHashCheck(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	damageSnapshot(func(b []byte) []byte { return b[:len(b)-32] })(t, s, nil)
	var out bytes.Buffer
	o := options(s, &out)
	o.SkipHashCheck = true
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "no sha256 trailer") {
		t.Errorf("no warning about the missing trailer:\n%s", out.String())
	}
	startFromManifest(t, s)
}

func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s (the test needs root, as CI has): %v %s", dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// moveIntoMount replaces a folder's contents with a fresh mount holding them.
func moveIntoMount(t *testing.T, dir, size string) {
	t.Helper()
	saved := dir + ".saved"
	if err := os.Rename(dir, saved); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir, 0o700)
	mountTmpfs(t, dir, size)
	if out, err := exec.Command("cp", "-a", saved+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.RemoveAll(saved)
}

// fillDataDir moves the scene's data dir onto a mount of its own and
// fills the mount, so that the old data fits and a restore does not, while
// the free-space check (which the tests override) lets it try. It returns
// the data dir.
func fillDataDir(t *testing.T, s *disaster.Scene) string {
	t.Helper()
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	moveIntoMount(t, dataDir, "200m")
	exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(dataDir, "filler"), "bs=64k").Run()
	return dataDir
}

// freeSpace removes fillDataDir's filler, which the failed run (whose
// output is out) kept aside with the old data: what an operator does
// before running the same command again.
func freeSpace(t *testing.T, dataDir, out string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dataDir, "etcd-rescue-kept-"+runID(t, out), "filler")); err != nil {
		t.Fatal(err)
	}
}

func TestDataDirOnItsOwnMountKeepsTheMount(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	moveIntoMount(t, dataDir, "256m")
	if err := os.Mkdir(filepath.Join(dataDir, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := disaster.TreeHash(t, filepath.Join(dataDir, "member"))
	var out bytes.Buffer
	if err := restore.Run(context.Background(), options(s, &out)); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	kept, _ := filepath.Glob(filepath.Join(dataDir, "etcd-rescue-kept-*", "member"))
	if len(kept) != 1 || disaster.TreeHash(t, kept[0]) != old {
		t.Fatalf("old member folder not kept inside the mount: %v\n%s", kept, out.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "lost+found")); err != nil {
		t.Errorf("lost+found was moved: %v", err)
	}
	startFromManifest(t, s)
}

func TestDiskFullFailsKeepsOldDataAndResumes(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	dataDir := fillDataDir(t, s)
	old := disaster.TreeHash(t, filepath.Join(dataDir, "member"))
	var out bytes.Buffer
	o := options(s, &out)
	o.DiskFree = func(string) (uint64, error) { return 1 << 40, nil }
	err := restore.Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("restore on a full disk: err = %v\n%s", err, out.String())
	}
	kept, _ := filepath.Glob(filepath.Join(dataDir, "etcd-rescue-kept-*", "member"))
	if len(kept) != 1 || disaster.TreeHash(t, kept[0]) != old {
		t.Fatalf("old data not intact after the failure: %v", kept)
	}
	// The operator frees space and runs the same command again.
	freeSpace(t, dataDir, out.String())
	out.Reset()
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("re-run after freeing space: %v\n%s", err, out.String())
	}
	startFromManifest(t, s)
}

// runID reads the run id from a restore's output (the kept folder's name).
func runID(t *testing.T, out string) string {
	t.Helper()
	i := strings.Index(out, "etcd-rescue-kept-")
	if i < 0 {
		t.Fatalf("no kept folder in:\n%s", out)
	}
	return out[i+len("etcd-rescue-kept-") : i+len("etcd-rescue-kept-")+15]
}

func TestReadOnlyRootIsRefused(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	if out, err := exec.Command("mount", "--bind", "-o", "ro", s.Root, s.Root).CombinedOutput(); err != nil {
		t.Fatalf("read-only bind mount (the test needs root, as CI has): %v %s", err, out)
	}
	defer exec.Command("umount", s.Root).Run()
	exec.Command("mount", "-o", "remount,bind,ro", s.Root).Run()
	before := disaster.TreeHash(t, s.Root)
	var out bytes.Buffer
	err := restore.Run(context.Background(), options(s, &out))
	if err == nil || !strings.Contains(err.Error(), "is not writable") || !strings.Contains(err.Error(), "remount,rw") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	if disaster.TreeHash(t, s.Root) != before {
		t.Fatal("refused restore changed the root")
	}
}

type crash struct{}

// runUntil runs a restore that stops dead after the named step, as a
// crash would (no journal update after it).
func runUntil(t *testing.T, o restore.Options, step string) {
	t.Helper()
	o.AfterStep = func(s string) {
		if s == step {
			panic(crash{})
		}
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crash); !ok {
				panic(r)
			}
		}
	}()
	restore.Run(context.Background(), o)
	t.Fatalf("the run did not stop after %s", step)
}

func TestResumedRestoreKeepsItsBackup(t *testing.T) {
	s := scene(t, profile.OpenShift43)
	var out bytes.Buffer
	runUntil(t, options(s, &out), "keep-old-state")
	// a newer backup lands in the folder before the operator re-runs
	sn, tb := backupFiles(t, s)
	for _, pair := range [][2]string{{sn, "snapshot_2099-01-01_000000.db"}, {tb, "static_kuberesources_2099-01-01_000000.tar.gz"}} {
		if out, err := exec.Command("cp", filepath.Join(s.BackupDir, pair[0]), filepath.Join(s.BackupDir, pair[1])).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	out.Reset()
	err := restore.Run(context.Background(), options(s, &out))
	if err == nil || !strings.Contains(err.Error(), "started from "+sn+" but now finds snapshot_2099-01-01_000000.db") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	out.Reset()
	o := options(s, &out)
	o.BackupTimestamp = s.Backup.Timestamp
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("resume with the first backup picked by its timestamp: %v\n%s", err, out.String())
	}
	out.Reset()
	o = options(s, &out)
	o.ClusterToken = "second-run"
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("a finished run with other flags starts a new run: %v\n%s", err, out.String())
	}
	runs, _ := filepath.Glob(filepath.Join(s.Root, "var/lib/etcd-rescue/backup/*/var/lib/etcd/member"))
	if len(runs) != 2 {
		t.Fatalf("want the old data and the first restore's data both kept, found %v", runs)
	}
}

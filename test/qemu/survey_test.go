package qemu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/fixture"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/roles"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// consoleSurvey parses the verify role's one SURVEY-JSON line.
func consoleSurvey(t *testing.T, console string) *survey.Report {
	t.Helper()
	lines := regexp.MustCompile(`(?m)^`+roles.SurveyJSONPrefix+`(\{.*\})\r?$`).FindAllStringSubmatch(console, -1)
	if len(lines) != 1 {
		t.Fatalf("%d SURVEY-JSON lines on the console, want 1", len(lines))
	}
	var r survey.Report
	if err := json.Unmarshal([]byte(lines[0][1]), &r); err != nil {
		t.Fatalf("the SURVEY-JSON line does not parse: %v\n%s", err, lines[0][1])
	}
	return &r
}

// surveyAdded checks that the only change between before (the backup
// volume's files before the boot) and the backup disk after it is one new
// survey-<member>-<time>.json in etcd/, and returns its report.
func surveyAdded(t *testing.T, before, backupDisk, member string) *survey.Report {
	t.Helper()
	after := qemu.Ext4Tree(t, backupDisk)
	diff := disaster.TreeDiff(t, before, after)
	name := regexp.MustCompile(`^\+ (etcd/survey-` + regexp.QuoteMeta(member) + `-\d{4}-\d{2}-\d{2}_\d{6}\.json) `)
	if len(diff) != 1 || !name.MatchString(diff[0]) {
		t.Fatalf("the backup volume changed by %q, want only etcd/survey-%s-<time>.json added", diff, member)
	}
	b, err := os.ReadFile(filepath.Join(after, name.FindStringSubmatch(diff[0])[1]))
	if err != nil {
		t.Fatal(err)
	}
	var r survey.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("the survey beside the backup does not parse: %v", err)
	}
	return &r
}

// surveyDisks makes a kubeadm master's root whose /var/lib/etcd is an
// absolute symlink to /data/etcd, holding a real etcd data dir with 30
// writes more than the backup volume's backup.
func surveyDisks(t *testing.T) (backupDisk, rootDisk string) {
	t.Helper()
	p := etcdtest.NewPKI(t)
	rootSrc := t.TempDir()
	if _, err := fixture.Write(rootSrc, fixture.Master{Profile: profile.Kubeadm, NodeName: "master-0", MemberName: "master-0",
		IP: "192.0.2.10", DNSName: "etcd-0.lab.example.com", ClusterDomain: "lab.example.com"}, p.CA); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(rootSrc, "var/lib/etcd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/data/etcd", filepath.Join(rootSrc, "var/lib/etcd")); err != nil {
		t.Fatal(err)
	}
	spec := etcdtest.MemberSpec{Name: "master-0", DataDir: filepath.Join(rootSrc, "data/etcd"),
		PeerURL: etcdtest.FreeURL(t), ClientURL: etcdtest.FreeURL(t), State: "new"}
	spec.InitialCluster = spec.Name + "=" + spec.PeerURL
	m := p.Start(t, spec)
	cli := p.Client(t, spec.ClientURL)
	etcdtest.PutKeys(t, cli, 0, 100)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	_, err = snap.ReadFrom(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	etcdtest.PutKeys(t, cli, 100, 130)
	m.Stop()

	backupSrc := filepath.Join(t.TempDir(), "etcd")
	if err := os.MkdirAll(backupSrc, 0o755); err != nil {
		t.Fatal(err)
	}
	tgz, err := qemu.TarGz([2]string{"pki/ca.crt", "x\n"})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"snapshot_2026-01-02_030405.db": snap.Bytes(), "static_kuberesources_2026-01-02_030405.tar.gz": tgz} {
		if err := os.WriteFile(filepath.Join(backupSrc, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The data dir's WAL segment is 64 MB.
	return qemu.Ext4Image(t, "", filepath.Dir(backupSrc), "backup", 32),
		qemu.Ext4Image(t, filepath.Join(t.TempDir(), "root.ext4"), rootSrc, "", 160)
}

// TestBootVerifySurvey boots the verify role on a master whose data dir is
// fresher than its backup: the SURVEY-JSON line on the console parses and
// ranks the data dir (found through the manifest and an absolute symlink
// on the master's root) first and the backup 30 revisions behind; after
// the boot the backup volume holds the same report in
// etcd/survey-master-0-<time>.json and nothing else changed on either disk.
func TestBootVerifySurvey(t *testing.T) {
	cfg, err := ignition.Build(ignition.Options{Plan: []byte(labPlan), Role: ignition.Role{Role: ignition.RoleVerify, Member: "master-0"}})
	if err != nil {
		t.Fatal(err)
	}
	backupDisk, rootDisk := surveyDisks(t)
	rootBefore := qemu.FileHash(t, rootDisk)
	backupBefore := qemu.Ext4Tree(t, backupDisk)
	vm := qemu.Start(t, append(bootOptions(t, "pxe"),
		qemu.WithName("verify-survey"), qemu.WithAccel(lab.accel), qemu.WithTimeout(5*time.Minute),
		qemu.WithIgnition(writeConfig(t, cfg)),
		qemu.WithDisk(backupDisk, qemu.Disk{Serial: "backup"}),
		qemu.WithDisk(rootDisk, qemu.Disk{Serial: "root"}))...)
	expectToEnd(t, vm, 3*time.Minute,
		"data dir: /var/lib/etcd (the manifest's --data-dir /var/lib/etcd)",
		roles.SurveyJSONPrefix,
		"survey written to /run/etcd-rescue/backup/etcd/survey-master-0-",
		"VERIFY-OK snapshot_2026-01-02_030405.db",
		"etcd-rescue: powering off",
	)
	r := consoleSurvey(t, vm.Console())
	if len(r.Sources) != 2 || r.PlanSource != "survivor-data" || r.RecommendedPath != "/var/lib/etcd" {
		t.Fatalf("the console's survey recommends %s (%s) of %d sources, want /var/lib/etcd (survivor-data) of 2", r.RecommendedPath, r.PlanSource, len(r.Sources))
	}
	d, b := r.Sources[0], r.Sources[1]
	if d.Kind != survey.DataDir || d.Rank != 1 || !d.Usable() {
		t.Errorf("first row %s %s rank %d (error %q): want the usable data dir", d.Kind, d.Path, d.Rank, d.Error)
	}
	if d.WAL == nil || d.WAL.Dir != "/var/lib/etcd/member/wal" {
		t.Errorf("the data dir's WAL is reported as %+v, want /var/lib/etcd/member/wal as the master sees it", d.WAL)
	}
	if b.Kind != survey.Backup || b.Rank != 2 || b.LostRevisions != 30 || !b.LostExact {
		t.Errorf("backup row rank %d, %d revisions lost (exact %v): want rank 2, exactly the 30 written after it", b.Rank, b.LostRevisions, b.LostExact)
	}
	saved := surveyAdded(t, backupBefore, backupDisk, "master-0")
	if saved.RecommendedPath != r.RecommendedPath || len(saved.Sources) != 2 || saved.Sources[1].LostRevisions != b.LostRevisions {
		t.Errorf("the file beside the backup recommends %s of %d sources, the console %s of 2", saved.RecommendedPath, len(saved.Sources), r.RecommendedPath)
	}
	if qemu.FileHash(t, rootDisk) != rootBefore {
		t.Errorf("verify changed the master's root disk")
	}
	if strings.Contains(vm.Console(), "survey not written") {
		t.Errorf("the console says the survey was not written")
	}
}

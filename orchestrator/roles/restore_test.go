package roles

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

func env(t *testing.T, s *disaster.Scene, out *bytes.Buffer, withTokens bool) *boot.Env {
	t.Helper()
	m := plan.Member{Name: s.Master.MemberName, Host: s.Master.NodeName, DNSName: s.Master.DNSName,
		PeerURL: s.Master.PeerURL(), ClientURL: s.Master.ClientURL()}
	p := &plan.Plan{Version: plan.Version, Cluster: plan.Cluster{Name: "t", Domain: "test.example.com", Token: "etcd-cluster-1"},
		Profile: profile.OpenShift43, Survivor: m.Name,
		Members: []plan.Member{m, {Name: "new-1", PeerURL: "https://127.0.0.1:1"}}}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]ignition.File{ignition.PlanPath: {Path: ignition.PlanPath, Data: raw}}
	if withTokens {
		files[SignerTokensFile] = ignition.File{Path: SignerTokensFile, Data: []byte(`{"tokens":{}}`)}
	}
	return &boot.Env{Plan: p, Role: ignition.Role{Role: ignition.RoleRestore, Member: m.Name}, Member: m,
		Root: s.Root, Backup: s.BackupDir, Console: out, Files: files}
}

// TestRestoreRole restores a staged survivor, installs the recovery
// service, and prints RESTORE-OK once, after the install; a second run
// finds every changing step done and succeeds again.
func TestRestoreRole(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 100, Lost: 10})
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Restore(ctx, env(t, s, &out, true)); err != nil {
		t.Fatalf("restore role: %v\n%s", err, out.String())
	}
	text := out.String()
	if n := strings.Count(text, "RESTORE-OK"); n != 1 {
		t.Fatalf("RESTORE-OK printed %d times:\n%s", n, text)
	}
	// One numbered list: the restore's steps and the install steps are
	// counted together, the signer's install last.
	totals := map[string]bool{}
	for _, m := range regexp.MustCompile(`step \d+/(\d+) `).FindAllStringSubmatch(text, -1) {
		totals[m[1]] = true
	}
	if len(totals) != 1 {
		t.Fatalf("%d numbered lists of steps:\n%s", len(totals), text)
	}
	if last := regexp.MustCompile(`step (\d+)/(\d+) install-signer: done`).FindStringSubmatch(text); last == nil || last[1] != last[2] {
		t.Fatalf("install-signer is not the last step of the list:\n%s", text)
	}
	ok := strings.Index(text, "RESTORE-OK")
	if inst := strings.Index(text, "install-signer: done"); inst < 0 || inst > ok {
		t.Fatalf("RESTORE-OK before the signer was installed:\n%s", text)
	}
	if !strings.Contains(text, "recovery service installed") {
		t.Errorf("marker does not say the recovery service is installed:\n%s", text)
	}
	for _, p := range []string{signer.DefaultBinary, plan.DefaultPath, signer.StateDir + "/tokens.json", signer.UnitPath} {
		disaster.MustExist(t, filepath.Join(s.Root, p))
	}
	if l, err := os.Readlink(filepath.Join(s.Root, signer.UnitWantsPath)); err != nil || l == "" {
		t.Errorf("signer unit not enabled: %v", err)
	}

	out.Reset()
	if err := Restore(ctx, env(t, s, &out, true)); err != nil {
		t.Fatalf("second run: %v\n%s", err, out.String())
	}
	for _, step := range []string{"keep-old-state", "restore-snapshot", "install-binary", "install-plan", "install-tokens", "install-signer"} {
		if !strings.Contains(out.String(), step+": skipped: already done") {
			t.Errorf("second run did %s again:\n%s", step, out.String())
		}
	}
}

// TestRestoreRoleBadBackup prints RESTORE-FAILED with the reason, never
// RESTORE-OK, and installs nothing.
func TestRestoreRoleBadBackup(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 100, Lost: 10})
	b, err := os.ReadFile(s.Backup.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(s.Backup.Snapshot, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Restore(context.Background(), env(t, s, &out, false)); err == nil {
		t.Fatalf("restore of a damaged backup succeeded:\n%s", out.String())
	}
	if strings.Contains(out.String(), "RESTORE-OK") || !strings.Contains(out.String(), "RESTORE-FAILED: ") {
		t.Fatalf("markers:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(s.Root, signer.UnitPath)); err == nil {
		t.Errorf("the signer was installed after a failed restore")
	}
}

// TestRestoreRoleDryRun changes nothing and prints one dry-run marker.
func TestRestoreRoleDryRun(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 100, Lost: 10})
	before := disaster.TreeHash(t, s.Root)
	var out bytes.Buffer
	e := env(t, s, &out, true)
	e.DryRun = true
	if err := Restore(context.Background(), e); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), "RESTORE-DRY-RUN"); n != 1 || strings.Contains(out.String(), "RESTORE-OK") {
		t.Fatalf("markers (%d dry-run):\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "install-signer: would run") {
		t.Errorf("the dry run does not show the signer install:\n%s", out.String())
	}
	if disaster.TreeHash(t, s.Root) != before {
		t.Errorf("a dry run changed the root: %v", out.String())
	}
}

// TestRestoreRoleFromSurvivorData: with the plan's source: survivor-data
// the role restores the survivor's own data dir (a backup volume found as
// well is not used) and serves the writes made after the backup.
func TestRestoreRoleFromSurvivorData(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 100, Lost: 10})
	var out bytes.Buffer
	e := env(t, s, &out, false)
	e.Plan.Source = plan.SourceSurvivorData
	if err := Restore(context.Background(), e); err != nil {
		t.Fatalf("restore role: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "restore-survivor-data: done") || strings.Contains(out.String(), "verify-backup") {
		t.Fatalf("the role did not restore from the survivor's data:\n%s", out.String())
	}
	etcdtest.CheckKeys(t, s.StartFromManifest(t, s.Root), 0, s.Keys+s.Lost)
}

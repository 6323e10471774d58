package restore_test

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

var (
	scenesMu sync.Mutex
	scenes   = map[string]*disaster.Scene{}
)

// scene stages one quorum loss per profile for the whole package; each
// test works on its own copy.
func scene(t *testing.T, prof string) *disaster.Scene {
	t.Helper()
	scenesMu.Lock()
	defer scenesMu.Unlock()
	if s, ok := scenes[prof]; ok {
		return s.Copy(t)
	}
	s := disaster.Stage(disaster.Outliving(t), disaster.Options{Profile: prof})
	scenes[prof] = s
	return s.Copy(t)
}

func options(s *disaster.Scene, out *bytes.Buffer) restore.Options {
	return restore.Options{
		Root:        s.Root,
		BackupDir:   s.BackupDir,
		Member:      s.Member(),
		Out:         out,
		DialTimeout: 200 * time.Millisecond,
	}
}

// startFromManifest starts a real etcd exactly as the rewritten manifest
// says (disaster.Scene.StartFromManifest).
func startFromManifest(t *testing.T, s *disaster.Scene) *clientv3.Client {
	t.Helper()
	return s.StartFromManifest(t, s.Root)
}

func TestRestoreServesEveryKeyWithNewClusterID(t *testing.T) {
	for _, prof := range profile.Names() {
		t.Run(prof, func(t *testing.T) {
			s := scene(t, prof)
			oldData := disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.DataDir))
			var out bytes.Buffer
			if err := restore.Run(context.Background(), options(s, &out)); err != nil {
				t.Fatalf("restore: %v\n%s", err, out.String())
			}
			t.Log(out.String())
			if !strings.Contains(out.String(), "\nRESTORE-OK member="+s.Master.MemberName) {
				t.Fatalf("no RESTORE-OK marker:\n%s", out.String())
			}

			// The old data dir is kept byte for byte.
			j, err := journal.Open(s.Root, "restore", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			kept := j.Notes["keptDataDir"]
			if got := disaster.TreeHash(t, kept); got != oldData {
				t.Fatalf("kept data dir %s differs from the old data dir", kept)
			}

			cli := startFromManifest(t, s)
			id := s.CheckRestored(t, cli)
			if strconv.FormatUint(id, 16) != j.Notes["clusterID"] {
				t.Errorf("cluster ID %x, the restore announced %s", id, j.Notes["clusterID"])
			}
		})
	}
}

func TestRestoreTwiceIsNoOp(t *testing.T) {
	s := scene(t, profile.OpenShift43)
	var out bytes.Buffer
	if err := restore.Run(context.Background(), options(s, &out)); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	before, snap := disaster.TreeHash(t, s.Root), disaster.Snap(t, s.Root)
	out.Reset()
	if err := restore.Run(context.Background(), options(s, &out)); err != nil {
		t.Fatalf("second restore: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "RESTORE-OK") || strings.Contains(out.String(), ": started: move") {
		t.Fatalf("second run did work:\n%s", out.String())
	}
	for _, step := range []string{"keep-old-state", "restore-snapshot", "restore-static-resources", "rewrite-manifest"} {
		if !strings.Contains(out.String(), step+": skipped: already done") {
			t.Errorf("step %s was not skipped:\n%s", step, out.String())
		}
	}
	if after := disaster.TreeHash(t, s.Root); after != before {
		t.Fatalf("second run changed the root: %v", snap.Changes(t))
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	for _, prof := range profile.Names() {
		t.Run(prof, func(t *testing.T) {
			s := scene(t, prof)
			root, bk := disaster.TreeHash(t, s.Root), disaster.TreeHash(t, s.BackupDir)
			var out bytes.Buffer
			o := options(s, &out)
			o.DryRun = true
			if err := restore.Run(context.Background(), o); err != nil {
				t.Fatalf("dry run: %v\n%s", err, out.String())
			}
			if disaster.TreeHash(t, s.Root) != root || disaster.TreeHash(t, s.BackupDir) != bk {
				t.Fatal("dry run changed files")
			}
			text := out.String()
			for _, want := range []string{
				"RESTORE-DRY-RUN",
				"keep-old-state: would run: move the old data dir",
				"restore-snapshot: would run: restore",
				"revision bump",
				"rewrite-manifest: would run:",
				"revision  ",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("plan lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

func TestRefusesWhileOldMemberAnswers(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	u, _ := url.Parse(s.OldPeers[0])
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before, snap := disaster.TreeHash(t, s.Root), disaster.Snap(t, s.Root)
	var out bytes.Buffer
	err = restore.Run(context.Background(), options(s, &out))
	if err == nil || !strings.Contains(err.Error(), "still answer") || !strings.Contains(out.String(), "RESTORE-FAILED: ") {
		t.Fatalf("restore with a live old member: err=%v\n%s", err, out.String())
	}
	if disaster.TreeHash(t, s.Root) != before {
		t.Fatalf("refused restore changed the root: %v", snap.Changes(t))
	}
	out.Reset()
	o := options(s, &out)
	o.Force = true
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("--force restore: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "going on because of --force") {
		t.Errorf("no --force warning:\n%s", out.String())
	}
}

// TestRestoreFromSingleFileBackup restores the 4.3.0/4.3.1 form, with the
// survivor's static pod resources of the backed-up revision lost, so the
// resources come back from the tarball.
func TestRestoreFromSingleFileBackup(t *testing.T) {
	s := scene(t, profile.OpenShift43)
	s.SingleFileBackup(t)
	lost := filepath.Join(s.Root, "etc/kubernetes/static-pod-resources/kube-apiserver-pod-7")
	if err := os.RemoveAll(lost); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(s.Root, "etc/kubernetes/static-pod-resources/kube-scheduler-pod-7/configmaps/config/config.yaml")
	if err := os.WriteFile(changed, []byte("edited after the backup\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := restore.Run(context.Background(), options(s, &out)); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "single-file") {
		t.Errorf("the report does not name the single-file form:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(lost, "configmaps/etcd-serving-ca/ca-bundle.crt")); err != nil {
		t.Errorf("lost resources not restored: %v", err)
	}
	if b, _ := os.ReadFile(changed); string(b) == "edited after the backup\n" {
		t.Error("a resource edited after the backup was not restored")
	}
	kept, _ := filepath.Glob(filepath.Join(s.Root, "var/lib/etcd-rescue/backup/*/etc/kubernetes/static-pod-resources/kube-scheduler-pod-7/configmaps/config/config.yaml"))
	if len(kept) != 1 {
		t.Fatalf("the replaced resource was not kept aside: %v", kept)
	}
	if b, _ := os.ReadFile(kept[0]); string(b) != "edited after the backup\n" {
		t.Errorf("kept copy holds %q", b)
	}
	cli := startFromManifest(t, s)
	etcdtest.CheckKeys(t, cli, 0, s.Keys)
}

// TestCrashAfterTheFinalRenameLeavesNoScratch stages the state a crash
// between the restore's final rename and its cleanup leaves: the member is
// in place, the journal says "committing", the empty staging folder is
// still there. The re-run must see the restore as done and remove it.
func TestCrashAfterTheFinalRenameLeavesNoScratch(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	var out bytes.Buffer
	if err := restore.Run(context.Background(), options(s, &out)); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	j, err := journal.Open(s.Root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	delete(j.Notes, "restoreCommitted")
	j.Finished = nil
	j.Steps["restore-snapshot"] = journal.StepRecord{State: "started"}
	if err := j.Save(); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(s.Root, s.Profile.DataDir, ".etcd-rescue-restore-"+j.RunID)
	if err := os.Mkdir(staging, 0o700); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := restore.Run(context.Background(), options(s, &out)); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "restore-snapshot: skipped: already done") {
		t.Errorf("the committed restore ran again:\n%s", out.String())
	}
	if _, err := os.Stat(staging); err == nil {
		t.Error("the staging folder was left in the data dir")
	}
}

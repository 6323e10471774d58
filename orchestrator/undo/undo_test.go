package undo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/live"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/undo"
)

// restored is a staged quorum loss, its state before the restore, and a
// copy of its root after a real restore.
type restored struct {
	scene  *disaster.Scene
	before map[string]string // what the restore replaced, hashed
	after  map[string]string // the restored state, hashed
}

var (
	scenesMu sync.Mutex
	scenes   = map[string]*restored{}
)

// restoredScene stages a quorum loss per profile, restores it once, and
// gives each test a copy of the restored root.
func restoredScene(t *testing.T, prof string) (*disaster.Scene, *restored) {
	t.Helper()
	scenesMu.Lock()
	defer scenesMu.Unlock()
	if r, ok := scenes[prof]; ok {
		return r.scene.Copy(t), r
	}
	s := disaster.Stage(disaster.Outliving(t), disaster.Options{Profile: prof, Keys: 2000, Lost: 100})
	r := &restored{scene: s, before: state(t, s)}
	var out bytes.Buffer
	if err := restore.Run(context.Background(), restore.Options{Root: s.Root, BackupDir: s.BackupDir, Member: s.Member(), Out: &out, DialTimeout: 200 * time.Millisecond}); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	r.after = state(t, s)
	for k, v := range r.before {
		if r.after[k] == v && k != s.Profile.CertDir {
			t.Fatalf("the restore left %s as it was: the test would prove nothing", k)
		}
	}
	scenes[prof] = r
	return s.Copy(t), r
}

// state hashes what a restore replaces and an undo puts back.
func state(t *testing.T, s *disaster.Scene) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, rel := range []string{s.Profile.DataDir, s.Profile.Manifest, s.Profile.EnvFile, s.Profile.CertDir, s.Profile.ResourcesBase} {
		if rel != "" {
			m[rel] = disaster.TreeHash(t, filepath.Join(s.Root, rel))
		}
	}
	return m
}

// sameState fails the test naming every path whose hash differs.
func sameState(t *testing.T, s *disaster.Scene, want map[string]string, what string) {
	t.Helper()
	got := state(t, s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s differs from %s", filepath.Join(s.Root, k), what)
		}
	}
}

func runUndo(t *testing.T, s *disaster.Scene, run string, dryRun bool) string {
	t.Helper()
	var out bytes.Buffer
	if err := undo.Run(context.Background(), undo.Options{Root: s.Root, Run: run, DryRun: dryRun, Out: &out}); err != nil {
		t.Fatalf("undo --run %q: %v\n%s", run, err, out.String())
	}
	return out.String()
}

func undoJournal(t *testing.T, s *disaster.Scene) *journal.Journal {
	t.Helper()
	j, err := journal.Open(s.Root, "undo", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !j.Exists() {
		t.Fatal("no undo journal")
	}
	return j
}

func TestUndoPutsBackTheOldStateAndTheOldClusterStarts(t *testing.T) {
	for _, prof := range profile.Names() {
		t.Run(prof, func(t *testing.T) {
			s, r := restoredScene(t, prof)
			restoreRun, err := journal.Open(s.Root, "restore", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			out := runUndo(t, s, "", false)
			t.Log(out)
			if !strings.Contains(out, "\nUNDO-OK undone="+restoreRun.RunID) {
				t.Fatalf("no UNDO-OK marker naming run %s:\n%s", restoreRun.RunID, out)
			}
			// The old state is back byte for byte.
			sameState(t, s, r.before, "what it was before the restore")

			// The restored state is kept aside, listed in the undo journal.
			j := undoJournal(t, s)
			if j.Finished == nil || j.Params["run"] != restoreRun.RunID {
				t.Errorf("undo journal: finished %v, run %q", j.Finished, j.Params["run"])
			}
			for _, rel := range []string{s.Profile.DataDir, s.Profile.Manifest} {
				k, ok := j.KeptAt(filepath.Join(s.Root, rel))
				if !ok {
					t.Fatalf("the undo journal does not list %s: %+v", rel, j.Kept)
				}
				if !strings.HasPrefix(k.To, j.BackupDir(s.Root)) {
					t.Errorf("%s kept at %s, outside the undo's backup folder %s", rel, k.To, j.BackupDir(s.Root))
				}
				if got := disaster.TreeHash(t, k.To); got != r.after[rel] {
					t.Errorf("the restored %s kept at %s differs from what the restore left", rel, k.To)
				}
			}
			// The restore's journal is set aside, so a new restore starts afresh.
			if _, err := os.Stat(journal.Path(s.Root, "restore")); err == nil {
				t.Error("the undone restore's journal is still the restore journal")
			}
			disaster.MustExist(t, filepath.Join(restoreRun.BackupDir(s.Root), "restore-state.json"))

			// A second run changes nothing.
			snap, before := disaster.Snap(t, s.Root), disaster.TreeHash(t, s.Root)
			out = runUndo(t, s, "", false)
			if !strings.Contains(out, "UNDO-OK") || disaster.TreeHash(t, s.Root) != before {
				t.Fatalf("a second undo changed the root: %v\n%s", snap.Changes(t), out)
			}

			// The old cluster starts from it and serves every key, the ones
			// written after the backup included.
			cli := startOldCluster(t, s)
			etcdtest.CheckKeys(t, cli, 0, s.Keys+s.Lost)
			resp, err := cli.Get(context.Background(), "health")
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.ClusterId != s.ClusterID {
				t.Errorf("cluster ID %x, want the old %x", resp.Header.ClusterId, s.ClusterID)
			}
		})
	}
}

// startOldCluster starts the survivor as its put-back manifest says, and
// the two lost members from their data dirs: the old three-member cluster.
func startOldCluster(t *testing.T, s *disaster.Scene) *clientv3.Client {
	t.Helper()
	errs := make(chan error, len(s.OldMembers))
	for _, spec := range s.OldMembers {
		go func() {
			_, err := s.PKI.StartErr(t, spec)
			errs <- err
		}()
	}
	cli := s.StartFromManifest(t, s.Root)
	for range s.OldMembers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return cli
}

func TestUndoOfTheUndoReturnsTheRestoredState(t *testing.T) {
	s, r := restoredScene(t, profile.OpenShift43)
	restoreJournal := disaster.TreeHash(t, journal.Path(s.Root, "restore"))
	runUndo(t, s, "", false)
	first := undoJournal(t, s)
	out := runUndo(t, s, first.RunID, false)
	t.Log(out)
	if !strings.Contains(out, "UNDO-OK undone="+first.RunID+" (undo)") {
		t.Fatalf("no UNDO-OK for the undo of the undo:\n%s", out)
	}
	sameState(t, s, r.after, "what the restore left")
	if got := disaster.TreeHash(t, journal.Path(s.Root, "restore")); got != restoreJournal {
		t.Error("the restore's journal did not come back")
	}
	// The first undo's journal was archived beside what it kept, and the
	// second undo kept the old state in its own folder.
	disaster.MustExist(t, filepath.Join(first.BackupDir(s.Root), "undo-state.json"))
	second := undoJournal(t, s)
	k, ok := second.KeptAt(filepath.Join(s.Root, s.Profile.DataDir))
	if !ok || disaster.TreeHash(t, k.To) != r.before[s.Profile.DataDir] {
		t.Fatalf("the old data dir is not kept by the second undo: %+v", second.Kept)
	}
	// The restored member serves again.
	cli := s.StartFromManifest(t, s.Root)
	s.CheckRestored(t, cli)
	cli.Close()
}

func TestUndoDryRunListsEveryMoveAndChangesNothing(t *testing.T) {
	s, _ := restoredScene(t, profile.OpenShift43)
	snap, before := disaster.Snap(t, s.Root), disaster.TreeHash(t, s.Root)
	out := runUndo(t, s, "", true)
	t.Log(out)
	if after := disaster.TreeHash(t, s.Root); after != before {
		t.Fatalf("a dry run changed the root: %v", snap.Changes(t))
	}
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	for _, want := range []string{
		"keep aside: the contents of " + dataDir + " -> ",
		"put back: ",
		"/member -> " + dataDir + "/member\n",
		"put back: " + filepath.Join(s.Root, "var/lib/etcd-rescue/backup"),
		filepath.Join(s.Root, s.Profile.Manifest) + "\n",
		"set aside: the journal /var/lib/etcd-rescue/restore-state.json",
		"keep-restored-state: would run: move what run",
		"put-back: would run: put back",
		"UNDO-DRY-RUN",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the plan lacks %q:\n%s", want, out)
		}
	}
}

type crash struct{}

// undoUntil runs an undo that stops dead after the named step, as a crash
// would.
func undoUntil(t *testing.T, s *disaster.Scene, step string) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crash); !ok {
				panic(r)
			}
		}
	}()
	undo.Run(context.Background(), undo.Options{Root: s.Root, Out: &bytes.Buffer{}, AfterStep: func(name string) {
		if name == step {
			panic(crash{})
		}
	}})
	t.Fatalf("the undo did not stop after %s", step)
}

func TestUndoResumesAfterACrashAfterEveryStep(t *testing.T) {
	for _, step := range []string{"check-inputs", "keep-restored-state", "put-back", "set-aside-journal"} {
		t.Run(step, func(t *testing.T) {
			s, r := restoredScene(t, profile.Kubeadm)
			undoUntil(t, s, step)
			out := runUndo(t, s, "", false)
			if !strings.Contains(out, "UNDO-OK") {
				t.Fatalf("re-run after a crash after %s:\n%s", step, out)
			}
			sameState(t, s, r.before, "what it was before the restore")
			j := undoJournal(t, s)
			k, ok := j.KeptAt(filepath.Join(s.Root, s.Profile.DataDir))
			if !ok || disaster.TreeHash(t, k.To) != r.after[s.Profile.DataDir] {
				t.Fatalf("the restored data dir is not kept aside: %+v", j.Kept)
			}
		})
	}
}

// TestUndoWithTheDataDirOnItsOwnMount: the restore kept the old data inside
// the mount (a rename cannot leave it); the undo puts it back, removes the
// restore's emptied folder, and keeps the restored state inside the mount
// in turn.
func TestUndoWithTheDataDirOnItsOwnMount(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 500, Lost: 50})
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	saved := dataDir + ".saved"
	if err := os.Rename(dataDir, saved); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dataDir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", dataDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s (the test needs root, as CI has): %v %s", dataDir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dataDir).Run() })
	if out, err := exec.Command("cp", "-a", saved+"/.", dataDir).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.RemoveAll(saved)
	before, beforeNames := disaster.TreeHash(t, filepath.Join(dataDir, "member")), names(t, dataDir)
	var out bytes.Buffer
	if err := restore.Run(context.Background(), restore.Options{Root: s.Root, BackupDir: s.BackupDir, Member: s.Member(), Out: &out, DialTimeout: 200 * time.Millisecond}); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	restoredMember := disaster.TreeHash(t, filepath.Join(dataDir, "member"))
	runUndo(t, s, "", false)
	j := undoJournal(t, s)
	kept := filepath.Join(dataDir, "etcd-rescue-kept-"+j.RunID)
	if got := disaster.TreeHash(t, filepath.Join(kept, "member")); got != restoredMember {
		t.Fatalf("the restored member is not kept in %s", kept)
	}
	if got := disaster.TreeHash(t, filepath.Join(dataDir, "member")); got != before {
		t.Fatal("the old member is not back byte for byte")
	}
	want := append(beforeNames, filepath.Base(kept))
	slices.Sort(want)
	if got := names(t, dataDir); !slices.Equal(got, want) {
		t.Fatalf("the data dir holds %v, want %v (the restore's kept folder removed once empty)", got, want)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// TestUndoPutsBackReplacedResources: the restore replaced static pod
// resource files with the backup's, one of them inside the certificate
// folder it had copied aside whole; the undo puts every one back.
func TestUndoPutsBackReplacedResources(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 500, Lost: 50})
	edited := filepath.Join(s.Root, "etc/kubernetes/static-pod-resources/kube-scheduler-pod-7/configmaps/config/config.yaml")
	if err := os.WriteFile(edited, []byte("edited after the backup\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The backup's tarball gains a file in the certificate folder that the
	// master holds with other content.
	inCerts := filepath.Join(s.Profile.CertDir, "extra.conf")
	if err := os.WriteFile(filepath.Join(s.Root, inCerts), []byte("on the master\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stage := t.TempDir()
	tarball := s.Backup.Resources
	extra := filepath.Join(stage, strings.TrimPrefix(inCerts, s.Profile.ResourcesBase+"/"))
	for _, c := range [][]string{
		{"tar", "-xzf", tarball, "-C", stage},
		{"mkdir", "-p", filepath.Dir(extra)},
		{"sh", "-c", "echo 'from the backup' > " + extra},
		{"tar", "-czf", tarball, "-C", stage, "static-pod-resources"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	before := state(t, s)
	var out bytes.Buffer
	if err := restore.Run(context.Background(), restore.Options{Root: s.Root, BackupDir: s.BackupDir, Member: s.Member(), Out: &out, DialTimeout: 200 * time.Millisecond}); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	for p, want := range map[string]string{filepath.Join(s.Root, inCerts): "from the backup\n", edited: "edited after the backup\n"} {
		if b, _ := os.ReadFile(p); (string(b) == want) != strings.HasPrefix(want, "from") {
			t.Fatalf("the restore did not replace %s (it holds %q): the test would prove nothing\n%s", p, b, out.String())
		}
	}
	text := runUndo(t, s, "", false)
	t.Log(text)
	sameState(t, s, before, "what it was before the restore")
	if b, _ := os.ReadFile(filepath.Join(s.Root, inCerts)); string(b) != "on the master\n" {
		t.Errorf("%s holds %q after the undo", inCerts, b)
	}
}

// host stands for the live master's kubelet and container runtime in an
// online restore.
type host struct{}

func (host) StopKubelet(context.Context) error                 { return nil }
func (host) StartKubelet(context.Context) error                { return nil }
func (host) WaitPodsGone(context.Context, []live.PodRef) error { return nil }

// TestUndoOfAnOnlineRestore: an online restore copied the manifest while
// it was stopped, out of the kubelet's folder; the undo puts the old one
// back in the kubelet's folder.
func TestUndoOfAnOnlineRestore(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 500, Lost: 50})
	before := state(t, s)
	var out bytes.Buffer
	if err := restore.Run(context.Background(), restore.Options{Root: s.Root, BackupDir: s.BackupDir, Member: s.Member(), Out: &out,
		DialTimeout: 200 * time.Millisecond, Online: true, Host: host{}}); err != nil {
		t.Fatalf("online restore: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "stopped-manifests") {
		t.Fatalf("the restore did not stop the static pods: the test would prove nothing\n%s", out.String())
	}
	text := runUndo(t, s, "", false)
	t.Log(text)
	sameState(t, s, before, "what it was before the restore")
	if ents, _ := os.ReadDir(filepath.Join(s.Root, "var/lib/etcd-rescue/stopped-manifests")); len(ents) != 0 {
		t.Errorf("the undo put a manifest in the stopped folder: %v", ents)
	}
}

// TestUndoOfARestoreOntoAnEmptyDataDir: the restore found no data dir and
// kept none; the undo keeps the restored member aside all the same, and
// puts back the manifest and certificates.
func TestUndoOfARestoreOntoAnEmptyDataDir(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 500, Lost: 50})
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	if err := os.Rename(dataDir, filepath.Join(t.TempDir(), "lost")); err != nil {
		t.Fatal(err)
	}
	manifest := disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.Manifest))
	var out bytes.Buffer
	if err := restore.Run(context.Background(), restore.Options{Root: s.Root, BackupDir: s.BackupDir, Member: s.Member(), Out: &out, DialTimeout: 200 * time.Millisecond}); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	restoredMember := disaster.TreeHash(t, filepath.Join(dataDir, "member"))
	runUndo(t, s, "", false)
	if ents, err := os.ReadDir(dataDir); err != nil || len(ents) != 0 {
		t.Errorf("the data dir holds %v (%v), want nothing, as before the restore", ents, err)
	}
	if disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.Manifest)) != manifest {
		t.Error("the manifest is not back")
	}
	j := undoJournal(t, s)
	k, ok := j.KeptAt(dataDir)
	if !ok || disaster.TreeHash(t, filepath.Join(k.To, "member")) != restoredMember {
		t.Fatalf("the restored member is not kept aside: %+v", j.Kept)
	}
}

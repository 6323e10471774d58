package restore_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/undo"
)

// survivorOptions restore the scene from the survivor's own data dir.
func survivorOptions(s *disaster.Scene, out *bytes.Buffer) restore.Options {
	o := options(s, out)
	o.BackupDir, o.Source = "", plan.SourceSurvivorData
	return o
}

// keptDataDir is where the run's journal says the old data dir went.
func keptDataDir(t *testing.T, root string) string {
	t.Helper()
	j, err := journal.Open(root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return j.Notes["keptDataDir"]
}

// TestSurvivorDataRestoreKeepsEveryAcknowledgedWrite runs, for each etcd
// version real clusters run, a cluster whose survivor is the master's data
// dir through a power loss right after the last acknowledged write
// (etcdtest.PowerLoss: the writes are only in the survivor's WAL, its
// saved commit index lags the last ones), restores from the survivor's
// data, and starts the same version from the rewritten manifest: every
// acknowledged key is there, the revision is above the last one clients
// saw, the cluster ID is new and the old data dir is kept byte for byte.
func TestSurvivorDataRestoreKeepsEveryAcknowledgedWrite(t *testing.T) {
	t.Setenv(progress.EveryEnv, "1ms") // the apply's lines as it goes, see checkApplyMeter
	const keys = 300
	for _, v := range []string{"3.4.23", "3.5.35", "3.6.16", "3.7.3"} {
		t.Run(v, func(t *testing.T) {
			bin := etcdtest.VersionBinary(t, v)
			c := newCompatMaster(t, "registry.k8s.io/etcd:"+v+"-0")
			dataDir := filepath.Join(c.root, "var/lib/etcd")
			rev := etcdtest.PowerLoss(t, bin, dataDir, 0, keys)
			sv, err := survey.Run(survey.Options{DataDirs: []string{dataDir}})
			if err != nil {
				t.Fatal(err)
			}
			if b := sv.Sources[0].Backend; b == nil || b.Revision >= rev {
				t.Fatalf("the survivor's backend %+v: the writes (to revision %d) were meant to be only in its WAL", b, rev)
			}
			old := disaster.TreeHash(t, dataDir)

			var out bytes.Buffer
			err = restore.Run(context.Background(), restore.Options{Root: c.root, Source: plan.SourceSurvivorData,
				Member: plan.Member{Name: c.m.MemberName, PeerURL: c.fm.PeerURL()}, Out: &out, DialTimeout: 200 * time.Millisecond,
				Progress: progress.Lines})
			if err != nil {
				t.Fatalf("restore: %v\n%s", err, out.String())
			}
			t.Log(out.String())
			if n := checkApplyMeter(t, out.String()); n == 0 {
				t.Errorf("the apply counts no entries: the writes were meant to be only in the WAL")
			}
			if !strings.Contains(out.String(), "step 4/5 restore-survivor-data: done") {
				t.Errorf("no restore-survivor-data step in:\n%s", out.String())
			}
			if kept := keptDataDir(t, c.root); disaster.TreeHash(t, kept) != old {
				t.Fatalf("kept data dir %s differs from the survivor's data dir", kept)
			}

			_, cli := c.start(bin)
			etcdtest.CheckKeys(t, cli, 0, keys)
			st, err := cli.Status(context.Background(), c.fm.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			if st.Header.Revision <= rev {
				t.Errorf("revision %d not above %d, the last one clients saw", st.Header.Revision, rev)
			}
			if st.Header.ClusterId == uint64(sv.Sources[0].ClusterID) {
				t.Errorf("cluster ID %x is the survivor's old one", st.Header.ClusterId)
			}
			if !strings.HasPrefix(st.Version, v[:3]) {
				t.Errorf("served by etcd %s, want %s", st.Version, v)
			}
			ml, err := cli.MemberList(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(ml.Members) != 1 || ml.Members[0].Name != c.m.MemberName {
				t.Errorf("members = %v, want only %s", ml.Members, c.m.MemberName)
			}
		})
	}
}

// TestSurvivorDataRestoreKeepsWritesAfterTheBackup: on the staged quorum
// loss, the survivor's data holds the writes made after the backup; a
// restore from it serves them all, the backup's restore would not. A
// second run is a no-op, and undo puts the old data dir back byte for byte.
func TestSurvivorDataRestoreKeepsWritesAfterTheBackup(t *testing.T) {
	s := scene(t, profile.OpenShift43)
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	old := disaster.TreeHash(t, dataDir)
	var out bytes.Buffer
	if err := restore.Run(context.Background(), survivorOptions(s, &out)); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	restored := disaster.TreeHash(t, dataDir)
	out.Reset()
	if err := restore.Run(context.Background(), survivorOptions(s, &out)); err != nil {
		t.Fatalf("second run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "restore-survivor-data: skipped: already done") || disaster.TreeHash(t, dataDir) != restored {
		t.Errorf("the second run did the restore again:\n%s", out.String())
	}

	// etcd runs on a copy of the root, so that the root can be undone.
	copied := filepath.Join(t.TempDir(), "root")
	if b, err := exec.Command("cp", "-a", s.Root, copied).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, b)
	}
	cli := s.StartFromManifest(t, copied)
	etcdtest.CheckKeys(t, cli, 0, s.Keys+s.Lost)
	st, err := cli.Status(context.Background(), s.Master.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	if st.Header.Revision <= s.MaxRevision || st.Header.ClusterId == s.ClusterID {
		t.Errorf("revision %d (old %d), cluster ID %x (old %x)", st.Header.Revision, s.MaxRevision, st.Header.ClusterId, s.ClusterID)
	}

	out.Reset()
	if err := undo.Run(context.Background(), undo.Options{Root: s.Root, Out: &out}); err != nil {
		t.Fatalf("undo: %v\n%s", err, out.String())
	}
	if disaster.TreeHash(t, dataDir) != old {
		t.Errorf("undo did not put the survivor's data dir back byte for byte:\n%s", out.String())
	}
}

// TestSurvivorDataDryRunChangesNothing: the dry run surveys the data dir,
// runs the checks and prints every step, and the root is unchanged.
func TestSurvivorDataDryRunChangesNothing(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	before, snap := disaster.TreeHash(t, s.Root), disaster.Snap(t, s.Root)
	var out bytes.Buffer
	o := survivorOptions(s, &out)
	o.DryRun = true
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"verify-survivor-data", "restore-survivor-data", "commit and apply every entry of its WAL", "RANK", "free space on"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the dry run does not say %q:\n%s", want, out.String())
		}
	}
	if disaster.TreeHash(t, s.Root) != before {
		t.Fatalf("the dry run changed the root: %v", snap.Changes(t))
	}
}

// TestSurvivorDataFromAnotherDir restores from a data dir given with
// --from-data-dir (a survivor's data copied off its disk): that folder is
// only read, and the master's own data dir is kept aside as always.
func TestSurvivorDataFromAnotherDir(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	other := filepath.Join(t.TempDir(), "etcd")
	if err := os.Rename(filepath.Join(s.Root, s.Profile.DataDir), other); err != nil {
		t.Fatal(err)
	}
	before := disaster.TreeHash(t, other)
	var out bytes.Buffer
	o := survivorOptions(s, &out)
	o.FromDataDir = other
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if disaster.TreeHash(t, other) != before {
		t.Error("the restore changed the data dir it read")
	}
	etcdtest.CheckKeys(t, startFromManifest(t, s), 0, s.Keys+s.Lost)
}

// TestResumedSurvivorRestoreKeepsItsDataDir: a run from one survivor's
// data dir stops dead after keep-old-state; resumed with another data dir
// (or with the master's own), it refuses and says which one to pass; given
// the first one again, it finishes from it. Neither data dir is changed and
// the master's own is kept byte for byte.
func TestResumedSurvivorRestoreKeepsItsDataDir(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	first, other := filepath.Join(t.TempDir(), "etcd"), filepath.Join(t.TempDir(), "etcd")
	for _, d := range []string{first, other} {
		if b, err := exec.Command("cp", "-a", dataDir, d).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, b)
		}
	}
	old := disaster.TreeHash(t, dataDir)
	var out bytes.Buffer
	from := func(dir string) restore.Options {
		out.Reset()
		o := survivorOptions(s, &out)
		o.FromDataDir = dir
		return o
	}
	runUntil(t, from(first), "keep-old-state")

	for _, dir := range []string{other, ""} {
		err := restore.Run(context.Background(), from(dir))
		want := "this restore started from the survivor's data dir " + first + " but is now given "
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "pass --from-data-dir "+first+" to resume it") {
			t.Fatalf("resumed with --from-data-dir %q: err = %v, want %q\n%s", dir, err, want, out.String())
		}
		t.Logf("resumed with --from-data-dir %q: %v", dir, err)
	}
	if err := restore.Run(context.Background(), from(first)); err != nil {
		t.Fatalf("resumed with the first data dir: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "resuming restore run") {
		t.Errorf("the last run did not resume the first:\n%s", out.String())
	}
	if h := disaster.TreeHash(t, keptDataDir(t, s.Root)); h != old {
		t.Error("the master's data dir kept aside differs from the one before the restore")
	}
	if disaster.TreeHash(t, first) != old || disaster.TreeHash(t, other) != old {
		t.Error("the restore changed a data dir it was given")
	}
	etcdtest.CheckKeys(t, startFromManifest(t, s), 0, s.Keys+s.Lost)
}

// TestResumedSurvivorRestoreCountsTheLeftCopyAsFree: a crash inside
// restore-survivor-data leaves the copy of the data dir in the run's work
// folder; the resumed run's preflight counts its room as free (the step
// replaces it), so a disk with room for one copy is not refused.
func TestResumedSurvivorRestoreCountsTheLeftCopyAsFree(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	var out bytes.Buffer
	runUntil(t, survivorOptions(s, &out), "keep-old-state")
	j, err := journal.Open(s.Root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(s.Root, journal.Dir, "work", j.RunID, "survivor-copy", "member", "snap", "db")
	if err := os.MkdirAll(filepath.Dir(left), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(left, 1<<30); err != nil { // sparse: its size, not its blocks, is counted
		t.Fatal(err)
	}

	out.Reset()
	o := survivorOptions(s, &out)
	o.DiskFree = func(string) (uint64, error) { return 1 << 20, nil }
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("resume with the copy an earlier attempt left: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "1024 MiB on ") || !strings.Contains(out.String(), "hold the copy an earlier attempt left") {
		t.Errorf("the preflight does not count the left copy:\n%s", out.String())
	}
	if _, err := os.Stat(left); err == nil {
		t.Errorf("the left copy %s is still there", left)
	}
	etcdtest.CheckKeys(t, startFromManifest(t, s), 0, s.Keys+s.Lost)
}

// TestSurvivorDataRestoreShowsProgress: a restore from the survivor's data
// printing lines (not a terminal) shows how far the survey's read of the
// WAL, the copy of the data dir and the apply of the WAL's entries got:
// lines with a part of the total, a rate and the time left, and a summary
// of the whole; with progress off (--json) none of them.
func TestSurvivorDataRestoreShowsProgress(t *testing.T) {
	t.Setenv(progress.EveryEnv, "1ms")
	s := scene(t, profile.Kubeadm)
	var out bytes.Buffer
	o := survivorOptions(s, &out)
	o.Progress = progress.Lines
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	log := out.String()
	t.Log(log)
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	kept := keptDataDir(t, s.Root)

	// The copy: the kept data dir's files, the WAL's preallocated segment
	// whole (tens of MiB), so it reports while it goes.
	copied := meterLines(log, "copy "+kept+": ")
	if len(copied) < 2 || !strings.Contains(strings.Join(copied, "\n"), "/s, ") || !strings.Contains(strings.Join(copied, "\n"), " left") {
		t.Errorf("the copy's lines %q: want lines with a rate and the time left, and a summary", copied)
	}
	size := treeSize(t, filepath.Join(kept, "member"))
	if len(copied) > 0 && !strings.HasPrefix(copied[len(copied)-1], progress.Bytes(size)+" in ") {
		t.Errorf("the copy ends with %q, want a summary of the data dir's %s", copied[len(copied)-1], progress.Bytes(size))
	}

	// The survey read the WAL (as the data dir was then) before any change.
	if wal := meterLines(log, "      read WAL "+filepath.Join(dataDir, "member", "wal")+": "); len(wal) == 0 || !strings.Contains(wal[len(wal)-1], " in ") {
		t.Errorf("the survey's WAL read: %q, want a summary", wal)
	}

	checkApplyMeter(t, log)

	// --json: nothing of it.
	s = scene(t, profile.Kubeadm)
	out.Reset()
	o = survivorOptions(s, &out)
	o.Progress = progress.ModeFor(&out, true)
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	rate := regexp.MustCompile(`[0-9] (B|[KMGTPE]iB|entries)/s\b| left$`)
	for _, l := range strings.Split(out.String(), "\n") {
		if rate.MatchString(l) {
			t.Errorf("with --json: %q", l)
		}
	}
}

// checkApplyMeter wants the apply's meter to count the entries from the
// backend's consistent index (the survey's "applied raft index") to the
// WAL's last one, and returns how many.
func checkApplyMeter(t *testing.T, log string) uint64 {
	t.Helper()
	var last, applied uint64
	for _, l := range strings.Split(log, "\n") {
		fmt.Sscanf(strings.TrimSpace(l), "WAL of the copy: entries to %d", &last)
		if _, rest, ok := strings.Cut(l, ", applied raft index "); ok && strings.Contains(l, "backend: revision ") {
			fmt.Sscanf(rest, "%d", &applied)
		}
	}
	apply := meterLines(log, "apply the WAL: ")
	want := fmt.Sprintf("%d entries in ", last-applied)
	if last < applied || len(apply) == 0 || !strings.HasPrefix(apply[len(apply)-1], want) {
		t.Errorf("the apply's lines %q: want a summary %q… (the WAL to %d, the backend at %d)", apply, want, last, applied)
	}
	for _, l := range apply[:max(len(apply), 1)-1] {
		if !strings.HasSuffix(l, " entries/s") && !strings.HasSuffix(l, " left") || !strings.Contains(l, fmt.Sprintf(" of %d entries (", last-applied)) {
			t.Errorf("the apply's line %q: want a part of %d entries, a rate, and the time left", l, last-applied)
		}
	}
	return last - applied
}

// meterLines are the lines of log that start with label, label cut off.
func meterLines(log, label string) []string {
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if rest, ok := strings.CutPrefix(l, label); ok {
			lines = append(lines, rest)
		}
	}
	return lines
}

func treeSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if name := d.Name(); strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".broken") {
			return nil
		}
		info, err := d.Info()
		n += info.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

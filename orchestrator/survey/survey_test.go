package survey_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/testport"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// member is one etcd server process of a three-member test cluster.
type member struct {
	name, dir, peer, client string
	proc                    *etcdtest.Process
}

// kill ends the member as a power loss would: no graceful stop, so the
// backend keeps only what it had committed.
func (m *member) kill(t *testing.T) {
	t.Helper()
	if err := m.proc.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	m.proc.Cmd.Wait()
}

// startCluster starts three members of one etcd version on loopback.
// flags[i] are extra flags of member i.
func startCluster(t *testing.T, bin string, flags [3][]string) [3]*member {
	t.Helper()
	var ms [3]*member
	var ic []string
	for i := range ms {
		ms[i] = &member{
			name:   fmt.Sprintf("m%d", i),
			dir:    filepath.Join(t.TempDir(), "etcd"),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t)),
			client: fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t)),
		}
		ic = append(ic, ms[i].name+"="+ms[i].peer)
	}
	for i, m := range ms {
		argv := append([]string{"etcd",
			"--name", m.name, "--data-dir", m.dir,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "survey-test",
		}, flags[i]...)
		m.proc = etcdtest.StartBinary(t, bin, argv, nil)
	}
	return ms
}

func client(t *testing.T, ms ...*member) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.client)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// revision is the cluster's current revision (a linearizable read).
func revision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

// settle waits until every given member has applied revision rev and they
// all report the same committed raft index, and returns it.
func settle(t *testing.T, cli *clientv3.Client, rev int64, ms ...*member) uint64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var idx []uint64
		var last error
		for _, m := range ms {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := cli.Status(ctx, m.client)
			cancel()
			switch {
			case err != nil:
				last = err
			case st.Header.Revision != rev:
				last = fmt.Errorf("%s at revision %d, want %d", m.name, st.Header.Revision, rev)
			default:
				idx = append(idx, st.RaftIndex)
			}
		}
		if len(idx) == len(ms) && slices.Min(idx) == slices.Max(idx) {
			// The commit index reaches followers with the next heartbeat,
			// and is saved in their WAL then: check it held still.
			time.Sleep(time.Second)
			if again := statusIndex(t, cli, ms[0]); again == idx[0] {
				return idx[0]
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("members did not settle: %v %v", idx, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func statusIndex(t *testing.T, cli *clientv3.Client, m *member) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, m.client)
	if err != nil {
		t.Fatal(err)
	}
	return st.RaftIndex
}

// TestSurvey builds, for each etcd version the compatibility matrix
// covers, a three-member cluster that loses quorum the way real ones do:
// m1 dies early (stale), m0 and m2 keep writing and then lose power, m2's
// WAL rots; a backup was taken in between. The survey must rank m0 first
// (its backend lags far behind: every revision it keeps beyond is only in
// its WAL), then m1, then the backup, then m2 with its error, with losses
// that match what was written, and must change nothing it read.
func TestSurvey(t *testing.T) {
	for _, v := range []string{"3.4.23", "3.5.35", "3.6.16", "3.7.3"} {
		t.Run(v, func(t *testing.T) { testSurvey(t, v) })
	}
}

func testSurvey(t *testing.T, version string) {
	bin := etcdtest.VersionBinary(t, version)
	ms := startCluster(t, bin, [3][]string{
		// m0's backend commits nothing after start: what it applies stays
		// in its WAL, as after a crash between two backend commits.
		{"--backend-batch-interval", "1h"},
		// m1 takes raft snapshots, so its WAL is read from one.
		{"--snapshot-count", "40"},
		nil,
	})
	fresh, stale, damaged := ms[0], ms[1], ms[2]
	cli := client(t, ms[:]...)
	etcdtest.WaitHealthy(t, cli, fresh.proc, time.Minute)

	etcdtest.PutKeys(t, cli, 0, 100)
	revBackup := revision(t, cli)
	settle(t, cli, revBackup, ms[:]...)
	backupFile := filepath.Join(t.TempDir(), "snapshot_2026-11-27_101500.db")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), clientv3.Config{Endpoints: []string{damaged.client}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()}, backupFile); err != nil {
		t.Fatal(err)
	}

	etcdtest.PutKeys(t, cli, 100, 200)
	revStale := revision(t, cli)
	idxStale := settle(t, cli, revStale, ms[:]...)
	stale.kill(t)

	cli2 := client(t, fresh, damaged)
	etcdtest.WaitHealthy(t, cli2, fresh.proc, time.Minute) // a new leader, if m1 led
	etcdtest.PutKeys(t, cli2, 200, 300)
	revFresh := revision(t, cli2)
	idxFresh := settle(t, cli2, revFresh, fresh, damaged)
	fresh.kill(t)
	damaged.kill(t)
	etcdtest.DamageWAL(t, damaged.dir)
	t.Logf("written: backup at revision %d, stale at %d (index %d), fresh at %d (index %d)", revBackup, revStale, idxStale, revFresh, idxFresh)

	paths := []string{stale.dir, damaged.dir, fresh.dir, backupFile}
	before := map[string]string{}
	for _, p := range paths {
		before[p] = treeHash(t, p)
	}

	var log bytes.Buffer
	r, err := survey.Run(survey.Options{DataDirs: []string{stale.dir, damaged.dir, fresh.dir}, Backups: []string{backupFile}, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	r.WriteTable(&table)
	t.Logf("survey log:\n%s\n%s", log.String(), table.String())

	t.Run("reads only", func(t *testing.T) {
		for _, p := range paths {
			if after := treeHash(t, p); after != before[p] {
				t.Errorf("the survey changed %s", p)
			}
		}
	})

	t.Run("ranking", func(t *testing.T) {
		var order []string
		for _, s := range r.Sources {
			order = append(order, s.Path)
		}
		want := []string{fresh.dir, stale.dir, backupFile, damaged.dir}
		if strings.Join(order, " ") != strings.Join(want, " ") {
			t.Fatalf("ranking:\n got %v\nwant %v", order, want)
		}
		if !r.Sources[0].Recommended || r.PlanSource != "survivor-data" || r.RecommendedPath != fresh.dir {
			t.Errorf("recommended %s (%s), want %s (survivor-data)", r.RecommendedPath, r.PlanSource, fresh.dir)
		}
	})

	// What a restore from the fresh survivor's own data keeps is what etcd
	// itself keeps when it forces a new cluster from (a copy of) it.
	revForced := forcedRevision(t, bin, fresh.dir, fresh.name)
	t.Logf("etcd --force-new-cluster on a copy of the fresh data dir: revision %d", revForced)

	t.Run("fresh", func(t *testing.T) {
		s := r.Sources[0]
		if s.RevisionAtLeast != revForced {
			t.Errorf("revision at least %d, but etcd forcing a new cluster from it keeps %d", s.RevisionAtLeast, revForced)
		}
		if s.RevisionAtMost != revFresh {
			t.Errorf("revision at most %d, want %d: every acknowledged write is in its WAL", s.RevisionAtMost, revFresh)
		}
		if s.Index > idxFresh || s.WAL.LastIndex != idxFresh {
			t.Errorf("committed index %d, last %d; the members reported %d before the power loss", s.Index, s.WAL.LastIndex, idxFresh)
		}
		if s.Backend.Revision >= revStale {
			t.Errorf("backend revision %d: the test meant it to lag (batch interval 1h) below %d", s.Backend.Revision, revStale)
		}
		if s.ClusterID == 0 || s.MemberID == 0 || s.Term == 0 {
			t.Errorf("cluster %s member %s term %d: not read from the WAL", s.ClusterID, s.MemberID, s.Term)
		}
		var names []string
		for _, m := range s.Members {
			names = append(names, m.Name)
		}
		sort.Strings(names)
		if strings.Join(names, ",") != "m0,m1,m2" {
			t.Errorf("members %+v: want m0, m1, m2 (from the WAL: the backend never committed them)", s.Members)
		}
	})

	t.Run("stale", func(t *testing.T) {
		s := r.Sources[1]
		if s.Index > idxStale || s.WAL.LastIndex != idxStale || s.RevisionAtMost != revStale || s.RevisionAtLeast > revStale {
			t.Errorf("index %d (last %d), revision %d..%d; want up to index %d, revision %d", s.Index, s.WAL.LastIndex, s.RevisionAtLeast, s.RevisionAtMost, idxStale, revStale)
		}
		if s.LostRevisions != revForced-revStale {
			t.Errorf("loses %d revisions, want %d (%d kept by the fresh one, %d written before the stale one died)", s.LostRevisions, revForced-revStale, revForced, revStale)
		}
		if exact := revForced == revFresh && s.RevisionAtLeast == s.RevisionAtMost; s.LostExact != exact {
			t.Errorf("loss exact: %v, want %v", s.LostExact, exact)
		}
		if s.LostEntries != r.Sources[0].Index-s.Index || s.LostEntries < uint64(revForced-revStale) {
			t.Errorf("loses %d entries: want %d-%d, and at least one per lost revision", s.LostEntries, r.Sources[0].Index, s.Index)
		}
		if s.WAL.SnapshotIndex == 0 {
			t.Errorf("the WAL was not read from a raft snapshot (snapshot-count 40)")
		}
		if s.ClusterID != r.Sources[0].ClusterID {
			t.Errorf("cluster %s, fresh member's %s", s.ClusterID, r.Sources[0].ClusterID)
		}
	})

	t.Run("backup", func(t *testing.T) {
		s := r.Sources[2]
		if s.Revision != revBackup || s.LostRevisions != revForced-revBackup {
			t.Errorf("revision %d, loses %d; want %d, loses %d", s.Revision, s.LostRevisions, revBackup, revForced-revBackup)
		}
		if s.Hash != "sha256 ok" {
			t.Errorf("hash %q, want sha256 ok", s.Hash)
		}
		if s.Index == 0 || s.Index > idxStale || s.LostEntries != r.Sources[0].Index-s.Index {
			t.Errorf("index %d, loses %d entries: want an index below %d, losing %d", s.Index, s.LostEntries, idxStale, r.Sources[0].Index-s.Index)
		}
		if s.OtherCluster != "" {
			t.Errorf("flagged as another cluster's: %s", s.OtherCluster)
		}
	})

	t.Run("damaged", func(t *testing.T) {
		s := r.Sources[3]
		if s.Usable() || !strings.Contains(s.Error, "WAL") || !strings.Contains(s.Error, "damaged") || s.Recommended {
			t.Errorf("error %q, recommended %v: want the damaged WAL named", s.Error, s.Recommended)
		}
		if !strings.Contains(table.String(), "[4] error: ") || !strings.Contains(table.String(), "DAMAGED") {
			t.Errorf("the table does not show the damaged source's error:\n%s", table.String())
		}
	})

	t.Run("torn tail", func(t *testing.T) {
		torn := copyDir(t, fresh.dir)
		etcdtest.TearWAL(t, torn)
		r, err := survey.Run(survey.Options{DataDirs: []string{torn}})
		if err != nil {
			t.Fatal(err)
		}
		s := r.Sources[0]
		if !s.Usable() || s.WAL.TornTail == "" || !strings.Contains(strings.Join(s.Notes, " "), "torn WAL tail") {
			t.Fatalf("error %q, torn tail %q, notes %q: want a usable source with its torn tail noted", s.Error, s.WAL.TornTail, s.Notes)
		}
		if s.WAL.LastIndex != idxFresh-1 {
			t.Errorf("last entry %d, want %d: the torn record is the last one, %d", s.WAL.LastIndex, idxFresh-1, idxFresh)
		}
	})
}

// forcedRevision starts etcd with --force-new-cluster on a copy of dataDir
// and returns the revision it serves.
// copyDir copies a data dir with cp -a into a new temporary folder.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "etcd")
	if out, err := exec.Command("cp", "-a", dir, cp).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", dir, err, out)
	}
	return cp
}

func forcedRevision(t *testing.T, bin, dataDir, name string) int64 {
	t.Helper()
	cp := copyDir(t, dataDir)
	m := &member{
		name: name, dir: cp,
		peer:   fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t)),
		client: fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t)),
	}
	m.proc = etcdtest.StartBinary(t, bin, []string{"etcd", "--name", m.name, "--data-dir", m.dir, "--force-new-cluster",
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--listen-client-urls", m.client, "--advertise-client-urls", m.client}, nil)
	defer m.proc.Stop()
	cli := client(t, m)
	etcdtest.WaitHealthy(t, cli, m.proc, time.Minute)
	return revision(t, cli)
}

func treeHash(t *testing.T, p string) string {
	t.Helper()
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return disaster.TreeHash(t, filepath.Dir(p))
	}
	return disaster.TreeHash(t, p)
}

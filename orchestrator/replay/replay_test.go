package replay_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/testport"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/replay"
)

// TestReplayKeepsEveryAcknowledgedWrite: a three-member cluster of each
// etcd version takes writes and loses power at once, right after the last
// write was acknowledged. The survivor is a follower whose backend commits
// nothing after start, so every write is only in its WAL, and the commit
// index it saved lags the last acknowledged writes. Copy, CommitLog and
// Apply bring the copy's backend to the revision clients last saw; the
// survivor's own data dir is not changed.
func TestReplayKeepsEveryAcknowledgedWrite(t *testing.T) {
	for _, v := range []string{"3.4.23", "3.5.35", "3.6.16", "3.7.3"} {
		t.Run(v, func(t *testing.T) {
			dir, rev := SurvivorOfPowerLoss(t, etcdtest.VersionBinary(t, v), 300)
			before := disaster.TreeHash(t, dir)

			cp := filepath.Join(t.TempDir(), "copy")
			if err := replay.Copy(dir, cp); err != nil {
				t.Fatal(err)
			}
			l, err := replay.CommitLog(cp)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("WAL: commit %d, last %d (term %d), raised %d", l.Commit, l.LastIndex, l.LastTerm, l.Raised())
			a, err := replay.Apply(context.Background(), cp, l.LastIndex)
			if err != nil {
				t.Fatal(err)
			}
			if a.Revision != rev {
				t.Errorf("revision after the replay %d, want %d (the last acknowledged write)", a.Revision, rev)
			}
			if a.AppliedIndex < l.LastIndex {
				t.Errorf("applied %d, want at least %d", a.AppliedIndex, l.LastIndex)
			}
			if after := disaster.TreeHash(t, dir); after != before {
				t.Error("the survivor's data dir changed")
			}

			// The finding CommitLog answers: without it, the forced new
			// cluster stops at the saved commit index, short of the last
			// acknowledged writes. (The WALs of etcd 3.4 and 3.5 need
			// CommitLog to apply at all: their v2 requests.)
			if v == "3.4.23" || v == "3.5.35" {
				return
			}
			plain := filepath.Join(t.TempDir(), "copy")
			if err := replay.Copy(dir, plain); err != nil {
				t.Fatal(err)
			}
			p, err := replay.Apply(context.Background(), plain, l.Commit)
			if err != nil {
				t.Fatal(err)
			}
			if l.Raised() > 0 && p.Revision >= rev {
				t.Errorf("without CommitLog the copy reached revision %d: the test meant the saved commit index to lag the last write (%d)", p.Revision, rev)
			}
			t.Logf("without CommitLog: revision %d of %d", p.Revision, rev)
		})
	}
}

// SurvivorOfPowerLoss runs three members of bin, stops m0 or m1 (a
// follower), so that every write needs m2 in its quorum, writes n keys,
// kills the other two right
// after the last write is acknowledged, and returns the data dir of m2, a
// follower whose backend commits nothing after start, and the revision of
// the last write.
func SurvivorOfPowerLoss(t *testing.T, bin string, n int) (string, int64) {
	t.Helper()
	type member struct {
		name, dir, peer, client string
		proc                    *etcdtest.Process
	}
	var ms [3]*member
	var ic []string
	for i := range ms {
		ms[i] = &member{name: fmt.Sprintf("m%d", i), dir: filepath.Join(t.TempDir(), "etcd"),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t)),
			client: fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t))}
		ic = append(ic, ms[i].name+"="+ms[i].peer)
	}
	for i, m := range ms {
		argv := []string{"etcd", "--name", m.name, "--data-dir", m.dir,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "replay-test"}
		if i == 2 {
			argv = append(argv, "--backend-batch-interval", "1h")
		}
		m.proc = etcdtest.StartBinary(t, bin, argv, nil)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ms[0].client, ms[1].client}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	etcdtest.WaitHealthy(t, cli, ms[0].proc, time.Minute)
	// The survivor must have started and caught up before the writes.
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Status(ctx, ms[2].client)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("m2 does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Stop a follower of m0 and m1, so no election follows.
	st, err := cli.Status(context.Background(), ms[0].client)
	if err != nil {
		t.Fatal(err)
	}
	gone, kept := ms[0], ms[1]
	if st.Leader == st.Header.MemberId {
		gone, kept = ms[1], ms[0]
	}
	gone.proc.Cmd.Process.Kill()
	gone.proc.Cmd.Wait()
	cli.SetEndpoints(kept.client)
	var rev int64
	for i := range n {
		k, v := etcdtest.Key(i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := cli.Put(ctx, k, v)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rev = r.Header.Revision
	}
	for _, m := range ms { // a power loss: all at once, no graceful stop
		m.proc.Cmd.Process.Kill()
	}
	for _, m := range ms {
		m.proc.Cmd.Wait()
	}
	info, err := etcddata.Read(etcddata.DBPath(ms[2].dir))
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision >= rev {
		t.Fatalf("the survivor's backend is at revision %d: the test meant the writes to be only in its WAL (up to %d)", info.Revision, rev)
	}
	return ms[2].dir, rev
}

package etcdtest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/testport"
)

// PowerLoss runs three members of the etcd server bin, the first on
// survivorDir, stops one of the other two (a follower, so no election
// follows, and every write after needs the survivor in its quorum), writes
// keys from..to (Key), kills both right after the last write is
// acknowledged, and returns the revision of the last write. The survivor's
// backend commits nothing after start (a batch interval of an hour), so
// the writes are only in its WAL, and the commit index it saved lags the
// last ones: what a power loss leaves. (Callers check the backend: this
// package cannot import etcddata, whose tests use it.)
func PowerLoss(t testing.TB, bin, survivorDir string, from, to int) int64 {
	t.Helper()
	type member struct {
		name, dir, peer, client string
		proc                    *Process
	}
	var ms [3]*member
	var ic []string
	for i := range ms {
		ms[i] = &member{name: fmt.Sprintf("m%d", i), dir: filepath.Join(t.TempDir(), "etcd"),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t)),
			client: fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t))}
		ic = append(ic, ms[i].name+"="+ms[i].peer)
	}
	ms[0].dir = survivorDir
	for i, m := range ms {
		argv := []string{"etcd", "--name", m.name, "--data-dir", m.dir,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "power-loss"}
		if i == 0 {
			argv = append(argv, "--backend-batch-interval", "1h")
		}
		m.proc = StartBinary(t, bin, argv, nil)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ms[1].client, ms[2].client}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	WaitHealthy(t, cli, ms[1].proc, time.Minute)
	deadline := time.Now().Add(time.Minute)
	for { // the survivor must be up and caught up before the writes
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Status(ctx, ms[0].client)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the survivor does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := cli.Status(context.Background(), ms[1].client)
	if err != nil {
		t.Fatal(err)
	}
	gone, kept := ms[1], ms[2]
	if st.Leader == st.Header.MemberId {
		gone, kept = ms[2], ms[1]
	}
	gone.proc.Cmd.Process.Kill()
	gone.proc.Cmd.Wait()
	cli.SetEndpoints(kept.client)
	var rev int64
	for i := from; i < to; i++ {
		k, v := Key(i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := cli.Put(ctx, k, v)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rev = r.Header.Revision
	}
	for _, m := range []*member{ms[0], kept} { // a power loss: all at once
		m.proc.Cmd.Process.Kill()
	}
	ms[0].proc.Cmd.Wait()
	kept.proc.Cmd.Wait()
	return rev
}

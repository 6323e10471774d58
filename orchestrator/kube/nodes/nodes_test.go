package nodes_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/kubetest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/syncbuf"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/nodes"
)

// TestWait registers master nodes through a real kube-apiserver and flips
// their Ready condition through the status subresource while wait-nodes
// polls: it returns once all three are Ready, with progress lines on the
// way and the oc-like table at the end; a worker never counts.
func TestWait(t *testing.T) {
	s := kubetest.Start(t)
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-0", InternalIP: "10.0.0.10", Ready: true})
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-1", InternalIP: "10.0.0.11", Ready: false})
	s.CreateNode(t, kubetest.NodeSpec{Name: "worker-0", Role: "worker", InternalIP: "10.0.1.10", Ready: true})
	api := s.Clients(t)

	t.Run("times out with the state", func(t *testing.T) {
		w := &nodes.Waiter{API: api, Count: 2, Interval: 100 * time.Millisecond}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		got, err := w.Wait(ctx)
		if err == nil {
			t.Fatal("waited successfully with a NotReady master")
		}
		for _, want := range []string{"1/2 master nodes Ready", "master-1 (NotReady: KubeletNotReady", "journalctl -u kubelet"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if len(got) != 2 {
			t.Errorf("got %d master nodes, want 2 (the worker is not a master)", len(got))
		}
	})

	t.Run("waits until every master is Ready", func(t *testing.T) {
		out := &syncbuf.Buffer{}
		w := &nodes.Waiter{API: api, Count: 3, Names: []string{"master-0", "master-1", "master-2"}, Interval: 100 * time.Millisecond, Out: out}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		type result struct {
			err error
			n   int
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() { l, err := w.Wait(ctx); done <- result{err, len(l)} }()

		waitFor(t, out, "1/3 master nodes Ready; waiting for master-1 (NotReady")
		if !strings.Contains(out.String(), "master-2 (not registered)") {
			t.Errorf("progress does not name the unregistered master-2:\n%s", out.String())
		}
		s.CreateNode(t, kubetest.NodeSpec{Name: "master-2", InternalIP: "10.0.0.12", Ready: false})
		waitFor(t, out, "waiting for master-1 (NotReady: KubeletNotReady: container runtime network not ready: NetworkReady=false), master-2 (NotReady")
		s.SetNodeReady(t, "master-1", true)
		waitFor(t, out, "2/3 master nodes Ready; waiting for master-2")
		select {
		case r := <-done:
			t.Fatalf("returned with master-2 NotReady: %v", r.err)
		default:
		}
		s.SetNodeReady(t, "master-2", true)
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("all masters Ready after %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
		if r.n != 3 {
			t.Fatalf("returned %d nodes, want 3", r.n)
		}

		l, err := w.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var tbl bytes.Buffer
		nodes.WriteTable(&tbl, l, time.Now())
		lines := strings.Split(strings.TrimSpace(tbl.String()), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
			t.Fatalf("table:\n%s", tbl.String())
		}
		for i, want := range []string{"master-0", "master-1", "master-2"} {
			f := strings.Fields(lines[i+1])
			if f[0] != want || f[1] != "Ready" || f[2] != "master" || f[4] != kubetest.Version || f[5] != "10.0.0.1"+want[len(want)-1:] {
				t.Errorf("row %q, want %s Ready master <age> %s 10.0.0.1x", lines[i+1], want, kubetest.Version)
			}
		}
		t.Logf("table:\n%s", tbl.String())
	})
}

func waitFor(t *testing.T, out *syncbuf.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no progress line with %q in:\n%s", want, out.String())
}

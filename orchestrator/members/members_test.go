package members

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

func TestAddLearnerRules(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	ctx := context.Background()
	cli := c.PKI.Client(t, c.Members[0].Spec.ClientURL, c.Members[1].Spec.ClientURL)

	p := &plan.Plan{}
	for _, m := range c.Members {
		p.Members = append(p.Members, plan.Member{Name: m.Spec.Name, PeerURL: m.Spec.PeerURL})
	}
	list, err := List(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if miss := Missing(p, list); len(miss) != 0 {
		t.Fatalf("missing %v in a full cluster", miss)
	}

	// m2's master died; its replacement has a new address.
	c.Members[2].Stop()
	newURL := etcdtest.FreeURL(t)
	_, err = AddLearner(ctx, cli, AddRequest{Name: "m2", PeerURL: newURL})
	if !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "--replace-stale") {
		t.Fatalf("stale member: err = %v", err)
	}
	res, err := AddLearner(ctx, cli, AddRequest{Name: "m2", PeerURL: newURL, ReplaceStale: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].Name != "m2" || res.AlreadyPresent {
		t.Fatalf("replace: %+v", res)
	}
	if !strings.Contains(res.InitialCluster, "m2="+newURL) || strings.Contains(res.InitialCluster, c.Members[2].Spec.PeerURL) {
		t.Fatalf("initial cluster %s", res.InitialCluster)
	}

	// Asking again (a re-run) finds it.
	again, err := AddLearner(ctx, cli, AddRequest{Name: "m2", PeerURL: newURL})
	if err != nil || !again.AlreadyPresent || again.ID != res.ID || again.InitialCluster != res.InitialCluster {
		t.Fatalf("re-add: %+v, %v", again, err)
	}

	// Another master may not join while m2 is pending.
	_, err = AddLearner(ctx, cli, AddRequest{Name: "m3", PeerURL: etcdtest.FreeURL(t)})
	if !errors.Is(err, ErrPending) || !strings.Contains(err.Error(), "never started") {
		t.Fatalf("pending learner: err = %v", err)
	}

	// Nor while a voting member is added but not started (quorum risk).
	if err := retryUnhealthy(ctx, func() error { _, err := cli.MemberRemove(ctx, res.ID); return err }); err != nil {
		t.Fatal(err)
	}
	if err := retryUnhealthy(ctx, func() error { _, err := cli.MemberAdd(ctx, []string{etcdtest.FreeURL(t)}); return err }); err != nil {
		t.Fatal(err)
	}
	_, err = AddLearner(ctx, cli, AddRequest{Name: "m3", PeerURL: etcdtest.FreeURL(t)})
	if !errors.Is(err, ErrPending) || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("pending voter: err = %v", err)
	}
	list, _ = List(ctx, cli)
	if miss := Missing(p, list); len(miss) != 1 || miss[0] != "m2" {
		t.Fatalf("missing = %v", miss)
	}
}

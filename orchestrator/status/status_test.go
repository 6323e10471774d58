package status

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

func TestReportAndPlanCheck(t *testing.T) {
	c := etcdtest.StartCluster(t, 1)
	cli := c.Client(t)
	ctx := context.Background()
	if _, err := cli.MemberAddAsLearner(ctx, []string{etcdtest.FreeURL(t)}); err != nil {
		t.Fatal(err)
	}
	r, err := Collect(ctx, cli, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	r.WriteTable(&b)
	out := b.String()
	for _, want := range []string{"| ID ", "STATUS", "RAFT INDEX", "| started ", "| m0 ", "| unstarted ", "healthy", "leader"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	m0 := c.Members[0].Spec
	one := &plan.Plan{Members: []plan.Member{{Name: "m0", PeerURL: m0.PeerURL}}}
	if err := r.Check(one); err != nil {
		t.Errorf("one-member plan: %v", err)
	}
	two := &plan.Plan{Members: []plan.Member{{Name: "m0", PeerURL: m0.PeerURL}, {Name: "m1", PeerURL: "https://127.0.0.1:1"}}}
	if err := r.Check(two); err == nil || !strings.Contains(err.Error(), "1 of 2 planned members") || !strings.Contains(err.Error(), "m1") {
		t.Errorf("two-member plan: err = %v", err)
	}
}

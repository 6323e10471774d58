package etcdtest

import (
	"context"
	"testing"
)

func TestClusterServesKeysOverTLS(t *testing.T) {
	c := StartCluster(t, 3)
	cli := c.Client(t)
	PutKeys(t, cli, 0, 100)
	CheckKeys(t, cli, 0, 100)
	resp, err := cli.MemberList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 3 {
		t.Fatalf("members = %d, want 3", len(resp.Members))
	}
}

package join

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/lock"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// TestSecondRunOnTheRootIsRefused: while one run holds the root, a join
// (dry run included) is refused at once, naming the holder's pid, and
// writes nothing into the root.
func TestSecondRunOnTheRootIsRefused(t *testing.T) {
	root := t.TempDir()
	held, err := lock.Acquire(root)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	before := disaster.Snap(t, root)
	for _, dry := range []bool{true, false} {
		var out bytes.Buffer
		err := Run(context.Background(), Options{Root: root, DryRun: dry, Out: &out,
			Member: plan.Member{Name: "master-1", PeerURL: "https://192.0.2.2:2380"}, Endpoints: []string{"https://192.0.2.1:2379"}})
		if err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(out.String(), "JOIN-FAILED") {
			t.Fatalf("dry run %v: err = %v, want a refusal naming pid %d\n%s", dry, err, os.Getpid(), out.String())
		}
	}
	if ch := before.Changes(t); len(ch) > 0 {
		t.Fatalf("a refused join changed the root: %v", ch)
	}
}

// TestJoinRefusesBadURLs applies the plan's URL rules to flags.
func TestJoinRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"https://192.0.2.2:0", "https://192.0.2.2:99999", "https://:2380", "https://192.0.2.2:2380/x", "https://u@192.0.2.2:2380"} {
		root := t.TempDir()
		err := Run(context.Background(), Options{Root: root, DryRun: true,
			Member: plan.Member{Name: "master-1", PeerURL: u}, Endpoints: []string{"https://192.0.2.1:2379"}})
		if err == nil || !strings.Contains(err.Error(), "peer URL") {
			t.Errorf("peer URL %s: err = %v", u, err)
		}
	}
}

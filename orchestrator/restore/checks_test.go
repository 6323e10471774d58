package restore_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

// TestChecksOnlyRead stops a restore after each step that changes the
// root, as a crash would, then calls every step's Check on what it left:
// Check reads real state, so the root (journal included) must not change.
func TestChecksOnlyRead(t *testing.T) {
	for _, stop := range []string{"keep-old-state", "restore-snapshot", "rewrite-manifest"} {
		t.Run(stop, func(t *testing.T) {
			s := scene(t, profile.OpenShift43)
			var out bytes.Buffer
			runUntil(t, options(s, &out), stop)
			x, err := restore.Prepare(options(s, &out))
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			defer x.Close()
			ctx := context.Background()
			list := x.Steps()
			// verify-backup finds the backup the other steps look at.
			if list[0].Name != "verify-backup" {
				t.Fatalf("first step is %s", list[0].Name)
			}
			if err := list[0].Run(ctx); err != nil {
				t.Fatal(err)
			}
			before, snap := disaster.TreeHash(t, s.Root), disaster.Snap(t, s.Root)
			for _, st := range list {
				if _, err := st.Check(ctx); err != nil {
					t.Fatalf("check %s: %v", st.Name, err)
				}
				if disaster.TreeHash(t, s.Root) != before {
					t.Fatalf("the check of %s changed the root: %v", st.Name, snap.Changes(t))
				}
			}
		})
	}
}

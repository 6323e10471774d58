package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// TestRestoreFlagsFailClearlyAndChangeNothing gives restore bad
// --initial-cluster and --profile values: each must fail saying what is
// wrong, print RESTORE-FAILED, and leave the root byte for byte as it was.
func TestRestoreFlagsFailClearlyAndChangeNothing(t *testing.T) {
	staged := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 10, Lost: 1})
	for _, c := range []struct {
		name  string
		flags func(s *disaster.Scene) []string
		want  string
	}{
		{"initial cluster missing a name", cluster("=https://127.0.0.1:2380"), "has no member name"},
		{"initial cluster naming a member twice", cluster("a=https://127.0.0.1:2380,a=https://127.0.0.2:2380"), "names member \"a\" twice"},
		{"initial cluster with a URL twice", cluster("a=https://127.0.0.1:2380,b=https://127.0.0.1:2380"), "lists peer URL https://127.0.0.1:2380 twice"},
		{"initial cluster with a non-URL", cluster("a=etcd-0:2380"), "must start with https://"},
		{"initial cluster without this member", cluster("someone-else=https://127.0.0.1:2380"), "does not name this member"},
		{"initial cluster of three members", func(s *disaster.Scene) []string {
			return []string{"--initial-cluster", s.InitialCluster() + ",b=https://127.0.0.2:2380,c=https://127.0.0.3:2380"}
		}, "a restore starts a one-member cluster"},
		{"unknown profile", func(s *disaster.Scene) []string {
			return []string{"--initial-cluster", s.InitialCluster(), "--profile", "rke3"}
		}, "unknown profile \"rke3\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := staged.Copy(t)
			before, snap := disaster.TreeHash(t, s.Root), disaster.Snap(t, s.Root)
			args := append([]string{"restore", "--root", s.Root, "--backup", s.BackupDir, "--name", s.Master.MemberName}, c.flags(s)...)
			out, err := exec.Command(binary, args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("err = %v, want the output to say %q:\n%s", err, c.want, out)
			}
			if !strings.Contains(string(out), "RESTORE-FAILED: ") {
				t.Errorf("no RESTORE-FAILED marker:\n%s", out)
			}
			if disaster.TreeHash(t, s.Root) != before {
				t.Fatalf("a refused restore changed the root: %v", snap.Changes(t))
			}
		})
	}
}

// cluster gives --initial-cluster ic; --name is the scene's member.
func cluster(ic string) func(*disaster.Scene) []string {
	return func(*disaster.Scene) []string { return []string{"--initial-cluster", ic} }
}

package roles

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

func TestJoinRoleDryRunChangesNothing(t *testing.T) {
	p, err := plan.Parse([]byte(`version: 1
cluster: {name: test}
profile: openshift-4.3
survivor: m0
signer: {address: "https://127.0.0.1:9943"}
members:
- {name: m0, peerURL: "https://127.0.0.1:2380", clientURL: "https://127.0.0.1:2379"}
- {name: m1, dnsName: etcd-1.test.example.com, ip: 127.0.0.1, peerURL: "https://127.0.0.1:12380", clientURL: "https://127.0.0.1:12379"}
`))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	old := filepath.Join(root, "var/lib/etcd/member/snap/db")
	os.MkdirAll(filepath.Dir(old), 0o700)
	os.WriteFile(old, []byte("old"), 0o600)
	var out bytes.Buffer
	env := &boot.Env{Plan: p, Role: ignition.Role{Role: ignition.RoleJoin, Member: "m1"}, Root: root, Console: &out,
		Token: []byte("tok\n"), DryRun: true,
		Files: map[string]ignition.File{ignition.CAPinPath: {Data: []byte("sha256:00\n")}}}
	if err := Join(context.Background(), env); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"keep-old-state: would run: move var/lib/etcd", "certificates: would run", "member-add: would run", "JOIN-DRY-RUN"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatal("dry run moved the old data dir")
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/etcd-rescue")); err == nil {
		t.Fatal("dry run wrote a journal")
	}
}

package kubelet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/fixture"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

// TestDecodePod accepts the OpenShift 4.3 etcd manifest and refuses what a
// strict kubelet refuses.
func TestDecodePod(t *testing.T) {
	ca, err := pki.NewCA("lab", 0)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	node := "master-0.lab.example"
	if _, err := fixture.Write(root, fixture.Master{Profile: profile.OpenShift43, NodeName: node, MemberName: "etcd-member-" + node,
		IP: "10.88.0.10", DNSName: "etcd-0.lab.example", ClusterDomain: "lab.example"}, ca); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(root, "etc/kubernetes/manifests/etcd-member.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodePod(good)
	if err != nil {
		t.Fatalf("the fixture's etcd manifest is refused: %v", err)
	}
	if !runsEtcd(p) || discoveryDomain(p) != "lab.example" {
		t.Fatalf("runsEtcd %v, discovery domain %q", runsEtcd(p), discoveryDomain(p))
	}
	for name, tc := range map[string]struct{ from, to, want string }{
		"unknown field": {"  hostNetwork: true\n", "  hostNetwork: true\n  hostNetwrok: true\n", "unknown field"},
		"relative path": {"path: /var/lib/etcd\n", "path: var/lib/etcd\n", "not an absolute clean path"},
		"dotdot path":   {"path: /var/lib/etcd\n", "path: /var/lib/../etcd\n", "not an absolute clean path"},
		"no volume":     {"    - name: data-dir\n", "    - name: data-dri\n", "does not define"},
		"kind":          {"kind: Pod\n", "kind: Deployment\n", "want v1/Pod"},
	} {
		bad := strings.Replace(string(good), tc.from, tc.to, 1)
		if bad == string(good) {
			t.Fatalf("%s: edit did not apply", name)
		}
		if _, err := decodePod([]byte(bad)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}

// TestParseService reads the recovery service's unit as the restore writes it.
func TestParseService(t *testing.T) {
	files, err := signer.Manifest(signer.InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sf, err := parseService(strings.NewReader(string(files[0].Content)))
	if err != nil {
		t.Fatal(err)
	}
	if sf.execStart[0] != signer.DefaultBinary || sf.execStart[1] != "signer" || sf.restart != "on-failure" || sf.condition != signer.DefaultBinary {
		t.Fatalf("parsed %+v", sf)
	}
}

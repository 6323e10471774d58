package manifest

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to everything that reads a manifest from
// a master's disk: Parse, the invocation it starts (shell subset included),
// its flags and the rewrite for a restored member. None may panic; a bad
// manifest is an error. The seed corpus is testdata/fuzz/FuzzParse plus the
// fixtures' real manifests.
func FuzzParse(f *testing.F) {
	f.Add([]byte(scriptPod))
	for _, p := range []string{
		"../../internal/testing/fixture/roots/kubeadm/etc/kubernetes/manifests/etcd.yaml.tmpl",
		"../../internal/testing/fixture/roots/openshift-4.3/etc/kubernetes/manifests/etcd-member.yaml.tmpl",
	} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	root := f.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/etcd"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/etcd/etcd.conf"), []byte("ETCD_NAME=a\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		m.EtcdContainer()
		if inv, err := m.Invocation(Runtime{Root: root, NodeName: "n", Files: map[string]string{"/run/etcd/environment": "ETCD_IPV4_ADDRESS=192.0.2.1\n"}}); err == nil {
			fl := inv.Flags()
			inv.HostPath("/", fl["data-dir"])
		}
		if err := m.SetMember(Member{Name: "m", InitialCluster: "m=https://192.0.2.1:2380", State: "new", PeerURL: "https://192.0.2.1:2380"}); err == nil {
			m.Bytes()
		}
	})
}

package hostsfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb/hostsfile"
)

func TestApply(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	old := "127.0.0.1 localhost\n10.0.9.91 etcd-1.ocp.example.com etcd-1 # lost master\n10.0.0.5 api.ocp.example.com\n"
	if err := os.WriteFile(path, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	change := dnslb.DNSChange{Version: 1, Kind: "dns", Domain: "ocp.example.com", Records: []dnslb.Record{
		{Name: "etcd-0.ocp.example.com.", Type: "A", Values: []string{"10.0.0.10"}},
		{Name: "etcd-1.ocp.example.com.", Type: "A", Values: []string{"10.0.0.11"}},
		{Name: "_etcd-server-ssl._tcp.ocp.example.com.", Type: "SRV", Values: []string{"0 10 2380 etcd-0.ocp.example.com."}},
	}}
	want := `127.0.0.1 localhost
# etcd-rescue replaced: 10.0.9.91 etcd-1.ocp.example.com etcd-1 # lost master
10.0.0.5 api.ocp.example.com
# BEGIN etcd-rescue
10.0.0.10 etcd-0.ocp.example.com
10.0.0.11 etcd-1.ocp.example.com
# END etcd-rescue
`
	for i := 0; i < 2; i++ { // a second run replaces its own block
		if err := hostsfile.Apply(path, change); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		if string(b) != want {
			t.Fatalf("run %d:\n%s\nwant:\n%s", i+1, b, want)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
}

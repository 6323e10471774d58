package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/ignition"
)

// The network comes up once the master's root is mounted (its own network
// configuration is read from there), before the role runs; a network that
// fails is reported and the role still runs.
func TestBootNetworkAfterRoot(t *testing.T) {
	var order []string
	withRole(t, "restore", func(_ context.Context, e *Env) error { order = append(order, "role"); return nil }, WritableRoot(), NeedsBackup())
	f := newFake(t, "")
	f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleRestore}))
	f.addDisk("vda", "", map[string]string{"etc/kubernetes/manifests/": "", "etc/NetworkManager/system-connections/eth0.nmconnection": "[connection]\n"})
	f.addDisk("vdb", "data", map[string]string{"snapshot_2024-01-01_000000.db": "x"})
	f.Network = func(_ context.Context, env *Env, load func(...string) error) error {
		if _, err := os.Stat(filepath.Join(env.Root, "etc/NetworkManager/system-connections/eth0.nmconnection")); err != nil {
			t.Errorf("the network came up before the master's root was mounted: %v", err)
		}
		if err := load(); err != nil {
			t.Errorf("load no module: %v", err)
		}
		order = append(order, "network")
		return errors.New("no NIC 52:54:00:00:00:01")
	}
	if err := f.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v\n%s", err, f.console.String())
	}
	if strings.Join(order, ",") != "network,role" {
		t.Errorf("order %v, want network then role", order)
	}
	if !strings.Contains(f.console.String(), "network: no NIC 52:54:00:00:00:01: the role runs without network\n") {
		t.Errorf("the console does not report the network's failure:\n%s", f.console.String())
	}
}

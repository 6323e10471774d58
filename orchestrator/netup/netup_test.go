package netup

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

func TestAddress(t *testing.T) {
	for _, tc := range []struct {
		m    plan.Member
		want string
		ok   bool
		err  bool
	}{
		{m: plan.Member{Name: "a", IP: "10.88.0.10"}, want: "10.88.0.10/24", ok: true},
		{m: plan.Member{Name: "a", IP: "10.88.0.10", Prefix: 16}, want: "10.88.0.10/16", ok: true},
		{m: plan.Member{Name: "a", IP: "fd00::5"}, want: "fd00::5/64", ok: true},
		{m: plan.Member{Name: "a"}},
		{m: plan.Member{Name: "a", IP: "10.88.0.10", Prefix: 40}, err: true},
		{m: plan.Member{Name: "a", IP: "nope"}, err: true},
	} {
		got, ok, err := Address(tc.m)
		if (err != nil) != tc.err || ok != tc.ok {
			t.Errorf("%+v: ok %v err %v", tc.m, ok, err)
			continue
		}
		if ok && got.String() != tc.want {
			t.Errorf("%+v: %s, want %s", tc.m, got, tc.want)
		}
	}
}

func TestPickInterface(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, driver, typ string) {
		d := filepath.Join(dir, name)
		os.MkdirAll(filepath.Join(d, "device"), 0o755)
		os.WriteFile(filepath.Join(d, "type"), []byte(typ+"\n"), 0o644)
		if driver != "" {
			os.Symlink("../../../bus/drivers/"+driver, filepath.Join(d, "device", "driver"))
		}
	}
	if got := PickInterface(dir); got != "" {
		t.Fatalf("empty sysfs: %q", got)
	}
	mk("lo", "", "772")
	mk("eth0", "e1000", "1")
	if got := PickInterface(dir); got != "eth0" {
		t.Fatalf("ethernet only: %q", got)
	}
	mk("eth1", "virtio_net", "1")
	if got := PickInterface(dir); got != "eth1" {
		t.Fatalf("virtio preferred: %q", got)
	}
}

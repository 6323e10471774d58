package netup

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPredictableNames(t *testing.T) {
	sys := t.TempDir()
	net := filepath.Join(sys, "class", "net")
	mk := func(ifname, pci, mac string, attrs map[string]string) {
		dev := filepath.Join(sys, "devices", "pci0000:00", pci)
		os.MkdirAll(dev, 0o755)
		for k, v := range attrs {
			os.WriteFile(filepath.Join(dev, k), []byte(v+"\n"), 0o644)
		}
		os.MkdirAll(filepath.Join(net, ifname), 0o755)
		os.Symlink(dev, filepath.Join(net, ifname, "device"))
		os.WriteFile(filepath.Join(net, ifname, "address"), []byte(mac+"\n"), 0o644)
	}
	mk("eth0", "0000:01:00.0", "52:54:00:12:34:56", nil)
	mk("eth3", "0000:00:04.0/virtio3", "52:54:00:12:34:58", nil)
	mk("eth1", "0000:00:03.0", "52:54:00:12:34:57", nil)
	mk("eth2", "0000:3b:00.1", "3c:ec:ef:00:00:02", map[string]string{"acpi_index": "2"})
	os.MkdirAll(filepath.Join(sys, "bus", "pci", "slots", "3"), 0o755)
	os.WriteFile(filepath.Join(sys, "bus", "pci", "slots", "3", "address"), []byte("0000:00:03\n"), 0o644)
	for ifname, want := range map[string][]string{
		"eth0": {"enp1s0", "enx525400123456"},
		"eth1": {"ens3", "enp0s3", "enx525400123457"},
		"eth2": {"eno2", "enp59s0f1", "enx3cecef000002"},
		"eth3": {"enp0s4", "enx525400123458"},
	} {
		if got := PredictableNames(net, ifname); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", ifname, got, want)
		}
	}
}

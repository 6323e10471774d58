package netup

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/netconf"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// inNewNetns runs f on a thread in a new network namespace of its own,
// which goes away with the thread.
func inNewNetns(t *testing.T, f func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test configures interfaces in a network namespace of its own: run it as root")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestApplyNIC brings up a NIC found by MAC address (a veth pair stands for
// it) with an address, a default gateway, a route and DNS servers, in a
// network namespace of the test's own.
func TestApplyNIC(t *testing.T) {
	resolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	mac, _ := net.ParseMAC("52:54:00:de:ad:01")
	n := &netconf.Network{
		Port:    &netconf.Port{MAC: mac},
		Address: netip.MustParsePrefix("10.9.0.5/24"),
		Gateway: netip.MustParseAddr("10.9.0.1"),
		Routes:  []netconf.Route{{To: netip.MustParsePrefix("10.8.0.0/16"), Via: netip.MustParseAddr("10.9.0.254")}},
		DNS:     []netip.Addr{netip.MustParseAddr("10.9.0.53")},
		MTU:     1400,
	}
	inNewNetns(t, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nic7", HardwareAddr: mac}, PeerName: "far7"}); err != nil {
			return err
		}
		far, err := netlink.LinkByName("far7")
		if err != nil {
			return err
		}
		netlink.LinkSetUp(far)
		got, err := apply(context.Background(), n, nil, time.Second)
		if err != nil {
			return err
		}
		if want := "nic7 52:54:00:de:ad:01 → 10.9.0.5/24 gw 10.9.0.1, 10.8.0.0/16 via 10.9.0.254 mtu 1400 dns 10.9.0.53"; got != want {
			t.Errorf("apply said\n %s\nwant\n %s", got, want)
		}
		l, err := netlink.LinkByName("nic7")
		if err != nil {
			return err
		}
		if l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("nic7: mtu %d flags %s", l.Attrs().MTU, l.Attrs().Flags)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.9.0.5/24" {
			t.Errorf("addresses %v", addrs)
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		var rs []string
		for _, r := range routes {
			if r.Gw != nil {
				dst := "default"
				if r.Dst != nil && r.Dst.IP != nil && !r.Dst.IP.IsUnspecified() {
					dst = r.Dst.String()
				}
				rs = append(rs, dst+" via "+r.Gw.String())
			}
		}
		if got := strings.Join(rs, ", "); got != "default via 10.9.0.1, 10.8.0.0/16 via 10.9.0.254" && got != "10.8.0.0/16 via 10.9.0.254, default via 10.9.0.1" {
			t.Errorf("routes: %s", got)
		}
		// Applying again (a re-run) changes nothing and does not fail.
		if _, err := apply(context.Background(), n, nil, time.Second); err != nil {
			t.Errorf("second apply: %v", err)
		}
		return nil
	})
	if b, _ := os.ReadFile(resolvConf); string(b) != "nameserver 10.9.0.53\n" {
		t.Errorf("resolv.conf = %q", b)
	}
}

// TestApplyMissingNIC names the NIC it waited for and the ones it saw.
func TestApplyMissingNIC(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:de:ad:09")
	inNewNetns(t, func() error {
		_, err := apply(context.Background(), &netconf.Network{Port: &netconf.Port{MAC: mac}, Address: netip.MustParsePrefix("10.9.0.5/24")}, nil, 200*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "no network interface 52:54:00:de:ad:09 appeared within 200ms") {
			t.Errorf("missing NIC: %v", err)
		}
		return nil
	})
}

// TestMemberFromKeyfile: without members[].network, the master's own
// keyfile on its root says which NIC carries the member's address.
func TestMemberFromKeyfile(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, netconf.KeyfileDir)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "ens3.nmconnection"), []byte("[connection]\nid=ens3\ntype=ethernet\ninterface-name=ens3\n[ethernet]\nmac-address=52:54:00:de:ad:02\n[ipv4]\nmethod=manual\naddress1=10.9.1.5/24,10.9.1.1\n"), 0o600)
	mac, _ := net.ParseMAC("52:54:00:de:ad:02")
	var out strings.Builder
	inNewNetns(t, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", HardwareAddr: mac}, PeerName: "far0"}); err != nil {
			return err
		}
		return Member(context.Background(), plan.Member{Name: "m0", IP: "10.9.1.5"}, root, nil, time.Second, &out)
	})
	for _, want := range []string{
		"network: NIC 52:54:00:de:ad:02 → 10.9.1.5/24 gw 10.9.1.1, from /etc/NetworkManager/system-connections/ens3.nmconnection\n",
		"network: eth0 52:54:00:de:ad:02 → 10.9.1.5/24 gw 10.9.1.1 up (member m0)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out.String())
		}
	}
}

// TestProbePeers: a listening peer is reached from the local address, a
// refusing one is reached too, a silent one is not.
func TestProbePeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	p := &plan.Plan{Members: []plan.Member{
		{Name: "self", PeerURL: "https://127.0.0.1:1"},
		{Name: "up", PeerURL: "https://" + ln.Addr().String()},
		{Name: "refusing", PeerURL: "https://" + closedAddr},
	}}
	var out strings.Builder
	ProbePeers(context.Background(), p, "self", time.Second, &out)
	for _, want := range []string{
		"network: reached up at " + ln.Addr().String() + " from 127.0.0.1\n",
		"network: reached refusing at " + closedAddr + " (it refused the connection: no etcd listens there yet)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("probe lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "self") {
		t.Errorf("probed itself:\n%s", out.String())
	}
}

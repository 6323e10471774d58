package qemu_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/netlab"
)

// network is one row of the network matrix: the verify role boots as
// master-1 on a lab network the test builds in its own network namespaces,
// and must reach the survivor's peer port (a listener the test runs on
// master-0's address) through the network it set up: the console says
// "reached master-0 ... from 10.0.1.10" and the listener sees a connection
// from master-1's address.
type network struct {
	name string
	// nic and standsFor are what the README table says.
	nic, standsFor string
	// lab builds the row's network (and sets l's fields) and returns the
	// plan's master-1 fields beyond name and peerURL, the QEMU arguments
	// of the VM's NICs and what the console must show.
	lab func(t *testing.T, l *netRow) (member string, nics []string, console []string)
	// root adds files to the master's root (path -> content).
	root map[string]string
}

// netRow is what a row's lab gives the test: the namespace QEMU runs in,
// the namespace master-0's listener runs in, and QEMU monitor commands to
// send once the VM started.
type netRow struct {
	vmNet, peerNet *netlab.Net
	peerIP         string
	monitor        []string
}

const (
	memberIP = "10.0.1.10"
	mac1     = "52:54:00:00:01:01"
	mac2     = "52:54:00:00:01:02"
)

var networks = []network{
	{name: "bond-first-link-down", nic: "bond (`bonding`, active-backup) of two virtio-net NICs by MAC, the first one's link down (QEMU `set_link`)",
		standsFor: "a master with redundant uplinks, one of them cut",
		lab: func(t *testing.T, l *netRow) (string, []string, []string) {
			l.vmNet = newNet(t, "10.0.1.1/24")
			l.peerNet, l.peerIP = l.vmNet, "10.0.1.1"
			nics := append(tap(t, l.vmNet, "n1", mac1), tap(t, l.vmNet, "n2", mac2)...)
			l.monitor = []string{"set_link nic-n1 off"}
			return `ip: 10.0.1.10, network: {bond: {name: bond0, mode: active-backup, members: ["` + mac1 + `", "` + mac2 + `"]}}`, nics,
				[]string{`network: bond0 \(active-backup: \S+ ` + mac1 + ` down; \S+ ` + mac2 + ` up, active\) → 10\.0\.1\.10/24 up \(member master-1\)`}
		}},
	{name: "bond-802.3ad", nic: "bond (`bonding`, 802.3ad) of two virtio-net NICs by MAC, with no LACP partner (the bridge drops LACPDUs)",
		standsFor: "a master with an LACP bond whose switch does not answer LACP: the bond still passes traffic on one port",
		lab: func(t *testing.T, l *netRow) (string, []string, []string) {
			l.vmNet = newNet(t, "10.0.1.1/24")
			l.peerNet, l.peerIP = l.vmNet, "10.0.1.1"
			nics := append(tap(t, l.vmNet, "n1", mac1), tap(t, l.vmNet, "n2", mac2)...)
			return `ip: 10.0.1.10, network: {bond: {mode: 802.3ad, members: ["` + mac1 + `", "` + mac2 + `"]}}`, nics,
				[]string{`network: bond0 \(802\.3ad: \S+ ` + mac1 + ` up; \S+ ` + mac2 + ` up\) → 10\.0\.1\.10/24 up \(member master-1\)`}
		}},
	{name: "tagged-vlan", nic: "VLAN 100 (`8021q`) on a virtio-net NIC, on a trunk port that passes only frames tagged 100",
		standsFor: "a master whose switch port is a trunk (tagged VLAN)",
		lab: func(t *testing.T, l *netRow) (string, []string, []string) {
			l.vmNet = newNet(t, "10.0.1.1/24")
			l.peerNet, l.peerIP = l.vmNet, "10.0.1.1"
			return `ip: 10.0.1.10, network: {interface: {mac: "` + mac1 + `"}, vlan: {id: 100}}`, trunk(t, l.vmNet, "n1", mac1, 100),
				[]string{`network: \S+ ` + mac1 + ` vlan 100 \(\S+\.100\) → 10\.0\.1\.10/24 up`}
		}},
	{name: "routed-subnets", nic: "virtio-net in 10.0.1.0/24; the survivor in 10.0.2.0/24 behind a router (a namespace that forwards)",
		standsFor: "masters in different racks or zones, reached through the gateway",
		lab: func(t *testing.T, l *netRow) (string, []string, []string) {
			routed(t, l)
			return `ip: 10.0.1.10, network: {interface: {mac: "` + mac1 + `"}, gateway: 10.0.1.1, dns: [10.0.1.1]}`, tap(t, l.vmNet, "n1", mac1),
				[]string{`network: \S+ ` + mac1 + ` → 10\.0\.1\.10/24 gw 10\.0\.1\.1 dns 10\.0\.1\.1 up`}
		}},
	{name: "master-keyfile", nic: "no network in the plan: the master's own NetworkManager keyfile (address1= with gateway), naming the NIC `enp0s3` as udev does on the master (the rescue kernel says `eth0`), routed subnets",
		standsFor: "RHCOS and RHEL masters, whose network the plan need not repeat",
		// The NIC is the third PCI device (after the two disks): udev
		// names it enp0s3.
		root: map[string]string{"etc/NetworkManager/system-connections/enp0s3.nmconnection": "[connection]\nid=enp0s3\nuuid=8b9a8a5e-3f1f-3a74-9c8b-6d2a8b6b6c2e\ntype=ethernet\ninterface-name=enp0s3\n\n[ethernet]\n\n[ipv4]\naddress1=10.0.1.10/24,10.0.1.1\ndns=10.0.1.1;\nmethod=manual\n\n[ipv6]\nmethod=disabled\n"},
		lab: func(t *testing.T, l *netRow) (string, []string, []string) {
			routed(t, l)
			return `ip: 10.0.1.10`, tap(t, l.vmNet, "n1", mac1),
				[]string{`network: NIC enp0s3 → 10\.0\.1\.10/24 gw 10\.0\.1\.1 dns 10\.0\.1\.1, from /etc/NetworkManager/system-connections/enp0s3\.nmconnection`,
					`network: eth0 ` + mac1 + ` → 10\.0\.1\.10/24 gw 10\.0\.1\.1 dns 10\.0\.1\.1 up \(member master-1\)`}
		}},
	{name: "master-keyfile-bond-vlan", nic: "no network in the plan: the master's own NetworkManager keyfiles for an active-backup bond of `enp0s3` and `enp0s4` (the first one's link down) and VLAN 100 on it, both NICs on trunk ports",
		standsFor: "an RHCOS bare-metal master with bonded uplinks on trunk ports",
		root:      keyfileBondVLAN,
		lab: func(t *testing.T, l *netRow) (string, []string, []string) {
			l.vmNet = newNet(t, "10.0.1.1/24")
			l.peerNet, l.peerIP = l.vmNet, "10.0.1.1"
			nics := append(trunk(t, l.vmNet, "n1", mac1, 100), trunk(t, l.vmNet, "n2", mac2, 100)...)
			l.monitor = []string{"set_link nic-n1 off"}
			return `ip: 10.0.1.10`, nics, []string{
				`network: bond bond0 \(active-backup: enp0s3, enp0s4\) vlan 100 → 10\.0\.1\.10/24, from /etc/NetworkManager/system-connections/bond0\.100\.nmconnection, `,
				`network: bond0 \(active-backup: \S+ ` + mac1 + ` down; \S+ ` + mac2 + ` up, active\) vlan 100 \(bond0\.100\) → 10\.0\.1\.10/24 up \(member master-1\)`}
		}},
	{name: "master-netplan", nic: "no network in the plan: the master's own netplan file (ethernet matched by `macaddress`, `routes: to: default`, `nameservers`), routed subnets",
		standsFor: "Ubuntu kubeadm masters",
		root:      map[string]string{"etc/netplan/00-installer-config.yaml": "network:\n  version: 2\n  ethernets:\n    ens3:\n      match:\n        macaddress: \"" + mac1 + "\"\n      set-name: ens3\n      addresses: [10.0.1.10/24]\n      routes:\n        - to: default\n          via: 10.0.1.1\n      nameservers:\n        addresses: [10.0.1.1]\n"},
		lab: func(t *testing.T, l *netRow) (string, []string, []string) {
			routed(t, l)
			return `ip: 10.0.1.10`, tap(t, l.vmNet, "n1", mac1),
				[]string{`network: NIC ` + mac1 + ` → 10\.0\.1\.10/24 gw 10\.0\.1\.1 dns 10\.0\.1\.1, from /etc/netplan/00-installer-config\.yaml`}
		}},
}

// keyfileBondVLAN is an RHCOS-style bare-metal network as NetworkManager
// keeps it: an active-backup bond of two NICs named as udev names them, a
// VLAN on the bond (its parent given by the bond profile's UUID) holding
// the address.
var keyfileBondVLAN = map[string]string{
	"etc/NetworkManager/system-connections/bond0.nmconnection":              "[connection]\nid=bond0\nuuid=0c6e3ec4-5a3a-4e0b-8d6e-2d7d2b6a1c11\ntype=bond\ninterface-name=bond0\nautoconnect-slaves=1\n\n[bond]\nmiimon=100\nmode=active-backup\n\n[ipv4]\nmethod=disabled\n\n[ipv6]\nmethod=ignore\n",
	"etc/NetworkManager/system-connections/bond0-slave-enp0s3.nmconnection": "[connection]\nid=bond0-slave-enp0s3\nuuid=5b0c9f2e-4f0a-4a8e-9b3a-1e6d7a0b2c21\ntype=ethernet\ninterface-name=enp0s3\nmaster=0c6e3ec4-5a3a-4e0b-8d6e-2d7d2b6a1c11\nslave-type=bond\n",
	"etc/NetworkManager/system-connections/bond0-slave-enp0s4.nmconnection": "[connection]\nid=bond0-slave-enp0s4\nuuid=7d7f5c8e-2e4b-4c39-8a64-8c2f3f0b9a31\ntype=ethernet\ninterface-name=enp0s4\ncontroller=bond0\nport-type=bond\n",
	"etc/NetworkManager/system-connections/bond0.100.nmconnection":          "[connection]\nid=bond0.100\nuuid=c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8\ntype=vlan\ninterface-name=bond0.100\n\n[vlan]\nflags=1\nid=100\nparent=0c6e3ec4-5a3a-4e0b-8d6e-2d7d2b6a1c11\n\n[ipv4]\naddress1=10.0.1.10/24\nmethod=manual\n\n[ipv6]\nmethod=disabled\n",
}

// TestNetwork boots the verify role on each network of the matrix.
func TestNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the network matrix creates network namespaces, bridges and tap devices: run it as root")
	}
	start := time.Now()
	var boots atomic.Int32
	for _, nw := range networks {
		t.Run(nw.name, func(t *testing.T) {
			boots.Add(1)
			l := &netRow{}
			member, nics, want := nw.lab(t, l)
			plan := fmt.Sprintf(`version: 1
cluster: {name: lab, domain: lab.example}
survivor: master-0
members:
- {name: master-0, peerURL: "https://%s:2380", ip: %s}
- {name: master-1, peerURL: "https://%s:2380", %s}
`, l.peerIP, l.peerIP, memberIP, member)
			cfg, err := ignition.Build(ignition.Options{Plan: []byte(plan), Role: ignition.Role{Role: ignition.RoleVerify, Member: "master-1"}})
			if err != nil {
				t.Fatalf("%v\n%s", err, plan)
			}
			peer := listen(t, l.peerNet, l.peerIP+":2380")
			backupDisk, rootDisk := labDisks(t)
			if nw.root != nil {
				rootDisk = rootWith(t, nw.root)
			}
			mon := filepath.Join(t.TempDir(), "monitor.sock")
			opts := append(bootOptions(t, "pxe"),
				qemu.WithName("net-"+nw.name), qemu.WithAccel(lab.accel), qemu.WithTimeout(5*time.Minute),
				func(o *qemu.Options) error { o.QEMU = l.vmNet.QEMU(); return nil },
				qemu.WithIgnition(writeConfig(t, cfg)),
				qemu.WithDisk(rootDisk, qemu.Disk{}),
				qemu.WithDisk(backupDisk, qemu.Disk{}),
				qemu.WithNetwork(nics...),
				qemu.WithArgs("-monitor", "unix:"+mon+",server=on,wait=off"))
			vm := qemu.Start(t, opts...)
			if len(l.monitor) > 0 {
				if err := monitor(mon, l.monitor...); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range []string{"VERIFY-OK snapshot_2026-01-02_030405.db", "etcd-rescue: powering off"} {
				if _, err := vm.Expect(s, 4*time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			if err := vm.Wait(time.Minute); err != nil {
				t.Fatal(err)
			}
			out := vm.Console()
			want = append(want, `network: reached master-0 at `+regexp.QuoteMeta(l.peerIP)+`:2380 from 10\.0\.1\.10`,
				`(?m)^virtio \S+ → virtio_net\r?$`)
			for _, re := range want {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("the console lacks %s", re)
				}
			}
			if from := peer.from(); from != memberIP {
				t.Errorf("master-0's peer port saw a connection from %q, want one from %s", from, memberIP)
			}
		})
	}
	fmt.Printf("network matrix (%s): %d boots in %s\n", lab.accel, boots.Load(), time.Since(start).Round(time.Second))
}

// newNet makes a lab network namespace with a bridge at gateway.
func newNet(t *testing.T, gateway string) *netlab.Net {
	t.Helper()
	n, err := netlab.New(gateway, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

var tapSeq atomic.Int32

// tap adds a tap device on n's bridge and returns the QEMU arguments of a
// virtio-net NIC on it (device id nic-ID).
func tap(t *testing.T, n *netlab.Net, id, mac string) []string {
	t.Helper()
	dev := fmt.Sprintf("nettap%d", tapSeq.Add(1))
	ip(t, "-n", n.NS, "tuntap", "add", "dev", dev, "mode", "tap")
	ip(t, "-n", n.NS, "link", "set", dev, "master", n.Bridge, "up")
	return []string{"-netdev", "tap,id=" + id + ",ifname=" + dev + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=" + id + ",id=nic-" + id + ",mac=" + mac}
}

// routed makes the VM's subnet 10.0.1.0/24 (a bridge in a namespace that
// forwards, at 10.0.1.1) and the survivor's 10.0.2.0/24 (another
// namespace, master-0 at 10.0.2.10), joined by a veth pair with the router
// at 10.0.2.1.
func routed(t *testing.T, l *netRow) {
	l.vmNet = newNet(t, "10.0.1.1/24")
	l.peerNet, l.peerIP = newNet(t, "10.0.2.10/24"), "10.0.2.10"
	ip(t, "-n", l.vmNet.NS, "link", "add", "rtr0", "type", "veth", "peer", "name", "rtr1", "netns", l.peerNet.NS)
	ip(t, "-n", l.vmNet.NS, "addr", "add", "10.0.2.1/24", "dev", "rtr0")
	ip(t, "-n", l.vmNet.NS, "link", "set", "rtr0", "up")
	ip(t, "-n", l.peerNet.NS, "link", "set", "rtr1", "master", l.peerNet.Bridge, "up")
	ip(t, "-n", l.peerNet.NS, "route", "add", "default", "via", "10.0.2.1")
	if out, err := exec.Command("ip", "netns", "exec", l.vmNet.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("router: %v: %s", err, out)
	}
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// peer is master-0's peer port as the test plays it: a TCP listener that
// records the address of the first connection it accepts.
type peer struct {
	mu   sync.Mutex
	addr string
}

func (p *peer) from() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

func listen(t *testing.T, n *netlab.Net, addr string) *peer {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &peer{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			p.mu.Lock()
			if p.addr == "" {
				p.addr = host
			}
			p.mu.Unlock()
			c.Close()
		}
	}()
	return p
}

// monitor sends commands to QEMU's human monitor socket (it may take a
// moment to appear).
func monitor(sock string, cmds ...string) error {
	var c net.Conn
	var err error
	for i := 0; i < 50; i++ {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("QEMU monitor: %w", err)
	}
	defer c.Close()
	for _, cmd := range cmds {
		if _, err := io.WriteString(c, cmd+"\n"); err != nil {
			return fmt.Errorf("QEMU monitor %q: %w", cmd, err)
		}
	}
	// Read until the monitor echoed the last command's prompt.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	var got strings.Builder
	for strings.Count(got.String(), "(qemu)") <= len(cmds) {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return fmt.Errorf("QEMU monitor: %w (read %q)", err, got.String())
		}
	}
	if strings.Contains(got.String(), "not found") || strings.Contains(got.String(), "Error") {
		return fmt.Errorf("QEMU monitor: %q", got.String())
	}
	return nil
}

// trunk gives the VM a virtio-net NIC (netdev id, device nic-ID) whose frames go through a trunk port
// the test plays (QEMU's socket netdev, frames with a 4-byte length): a
// frame the VM tags with vid reaches n's bridge untagged through a tap, a
// frame from the bridge reaches the VM tagged, and every other frame of the
// VM is dropped. Linux bridge VLAN filtering would do the same, but the
// host's kernel may lack it; this needs only a tap.
func trunk(t *testing.T, n *netlab.Net, id, mac string, vid uint16) []string {
	t.Helper()
	dev := fmt.Sprintf("nettrunk%d", tapSeq.Add(1))
	ip(t, "-n", n.NS, "tuntap", "add", "dev", dev, "mode", "tap")
	ip(t, "-n", n.NS, "link", "set", dev, "master", n.Bridge, "up")
	var tapFile *os.File
	var ln net.Listener
	if err := n.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(dev)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("attach to tap %s: %w", dev, err)
		}
		unix.SetNonblock(fd, true)
		tapFile = os.NewFile(uintptr(fd), dev)
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); ln.Close(); tapFile.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { <-ctx.Done(); c.Close() }()
		go func() { // bridge → VM, tagged
			buf := make([]byte, 65536)
			for {
				k, err := tapFile.Read(buf)
				if err != nil {
					return
				}
				if k < 14 {
					continue
				}
				f := make([]byte, 0, k+8)
				f = binary.BigEndian.AppendUint32(f, uint32(k+4))
				f = append(f, buf[:12]...)
				f = binary.BigEndian.AppendUint16(f, 0x8100)
				f = binary.BigEndian.AppendUint16(f, vid)
				f = append(f, buf[12:k]...)
				if _, err := c.Write(f); err != nil {
					return
				}
			}
		}()
		var hdr [4]byte
		buf := make([]byte, 65536)
		for { // VM → bridge, only frames tagged vid, untagged
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			k := int(binary.BigEndian.Uint32(hdr[:]))
			if k > len(buf) {
				return
			}
			if _, err := io.ReadFull(c, buf[:k]); err != nil {
				return
			}
			if k < 18 || binary.BigEndian.Uint16(buf[12:]) != 0x8100 || binary.BigEndian.Uint16(buf[14:])&0xfff != vid {
				continue
			}
			f := append(append([]byte(nil), buf[:12]...), buf[16:k]...)
			if _, err := tapFile.Write(f); err != nil && !errors.Is(err, os.ErrClosed) {
				return
			}
		}
	}()
	return []string{"-netdev", "socket,id=" + id + ",connect=" + ln.Addr().String(),
		"-device", "virtio-net-pci,netdev=" + id + ",id=nic-" + id + ",mac=" + mac}
}

// rootWith makes a master root like labDisks' with extra files.
func rootWith(t *testing.T, files map[string]string) string {
	t.Helper()
	src := t.TempDir()
	all := map[string]string{"etc/kubernetes/manifests/etcd-member.yaml": "kind: Pod\n"}
	for p, body := range files {
		all[p] = body
	}
	for p, body := range all {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return qemu.Ext4Image(t, "", src, "", 32)
}

// networkTable renders the network rows of the README's machines table.
func networkTable() string {
	var b strings.Builder
	for _, nw := range networks {
		fmt.Fprintf(&b, "| network row (disks on virtio-blk) | %s | %s | `virtio_net` | boots to VERIFY-OK and reaches the survivor's peer port (`TestNetwork/%s`) |\n",
			nw.nic, nw.standsFor, nw.name)
	}
	return b.String()
}

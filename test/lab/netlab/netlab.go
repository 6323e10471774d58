// Package netlab is the lab's network: a network namespace the test
// creates, holding a bridge with the lab's gateway address and one tap
// device per VM, so that the VMs reach each other and the test, and nothing
// else. No address, route or device is added outside the namespace.
//
// QEMU runs inside the namespace (through `ip netns exec`, see QEMU); the
// test reaches the VMs with Dial, which opens sockets from a goroutine
// locked to an OS thread that entered the namespace; a small DNS server on
// the bridge serves the lab's names (see DNS). Cleanup kills nothing: the
// VMs are killed by the harness, then the namespace is deleted, which takes
// its bridge and taps with it.
package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// Net is one lab network.
type Net struct {
	// NS is the network namespace's name.
	NS string
	// Bridge is the bridge device in NS.
	Bridge string
	// Gateway is the bridge's address: where the DNS server listens.
	Gateway net.IP
	// Prefix is the lab network's prefix length.
	Prefix int

	handle netns.NsHandle
	qemu   string
	taps   atomic.Int32
}

var seq atomic.Int32

// New creates the namespace, its loopback and its bridge with gateway/prefix
// (for example "10.88.0.1/24"). Everything is removed when the test ends.
func New(t testing.TB, gateway string) *Net {
	t.Helper()
	ip, ipnet, err := net.ParseCIDR(gateway)
	if err != nil {
		t.Fatalf("lab gateway %q: %v", gateway, err)
	}
	prefix, _ := ipnet.Mask.Size()
	for _, tool := range []string{"ip", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install iproute2 and qemu-system-x86 (make deps)", tool)
		}
	}
	removeStale(t)
	n := &Net{NS: fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), seq.Add(1)), Bridge: "labbr0", Gateway: ip, Prefix: prefix}
	run(t, "ip", "netns", "add", n.NS)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.NS).CombinedOutput(); err != nil {
			t.Errorf("remove lab namespace %s: %v: %s", n.NS, err, out)
		}
	})
	run(t, "ip", "-n", n.NS, "link", "set", "lo", "up")
	run(t, "ip", "-n", n.NS, "link", "add", n.Bridge, "type", "bridge")
	run(t, "ip", "-n", n.NS, "addr", "add", gateway, "dev", n.Bridge)
	run(t, "ip", "-n", n.NS, "link", "set", n.Bridge, "up")
	h, err := netns.GetFromName(n.NS)
	if err != nil {
		t.Fatalf("open lab namespace %s: %v", n.NS, err)
	}
	n.handle = h
	t.Cleanup(func() { h.Close() })

	// QEMU starts inside the namespace; `ip netns exec` execs it, so the
	// harness's PID is QEMU's own.
	n.qemu = filepath.Join(t.TempDir(), "qemu-in-lab")
	qbin := os.Getenv(qemu.EnvQEMU)
	if qbin == "" {
		qbin = "qemu-system-x86_64"
	}
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", n.NS, qbin)
	if err := os.WriteFile(n.qemu, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

// nsPrefix starts every lab namespace's name; the creating process's PID
// follows.
const nsPrefix = "etcd-rescue-lab-"

// removeStale deletes lab namespaces left by test processes that no
// longer exist (a test killed before its cleanup ran).
func removeStale(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		pid, _, _ := strings.Cut(strings.TrimPrefix(f[0], nsPrefix), "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its test still runs
		}
		if b, err := exec.Command("ip", "netns", "del", f[0]).CombinedOutput(); err != nil {
			t.Logf("stale lab namespace %s: %v: %s", f[0], err, b)
		} else {
			t.Logf("removed stale lab namespace %s", f[0])
		}
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// Tap creates a tap device on the bridge and returns the harness options
// that run QEMU in the namespace with a virtio NIC on that tap. mac is the
// NIC's address, so that a machine keeps its identity across boots.
func (n *Net) Tap(t testing.TB, mac string) []qemu.Option {
	t.Helper()
	tap := fmt.Sprintf("labtap%d", n.taps.Add(1))
	run(t, "ip", "-n", n.NS, "tuntap", "add", "dev", tap, "mode", "tap")
	run(t, "ip", "-n", n.NS, "link", "set", tap, "master", n.Bridge, "up")
	t.Cleanup(func() { _ = exec.Command("ip", "-n", n.NS, "link", "del", tap).Run() })
	return []qemu.Option{
		n.QEMU(),
		qemu.WithNetwork("-netdev", "tap,id=lab0,ifname="+tap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=lab0,mac="+mac),
	}
}

// QEMU makes the harness start QEMU inside the namespace.
func (n *Net) QEMU() qemu.Option {
	return func(o *qemu.Options) error { o.QEMU = n.qemu; return nil }
}

// Do runs f on an OS thread that entered the namespace. Sockets f opens
// belong to the namespace for their whole life, wherever they are used
// afterwards. The thread is never returned to the Go scheduler: it ends
// with the goroutine.
func (n *Net) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(n.handle); err != nil {
			errc <- fmt.Errorf("enter lab namespace %s: %w", n.NS, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Dial connects to addr inside the lab network.
func (n *Net) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Command runs a program inside the namespace.
func (n *Net) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
}

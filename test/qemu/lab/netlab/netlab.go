// Package netlab is the lab's network: a network namespace holding a bridge
// with the lab's gateway address and one tap device per VM, so that the VMs
// reach each other and the lab, and nothing else. No address, route or
// device is added outside the namespace.
//
// QEMU runs inside the namespace (through `ip netns exec`: see QEMU); the
// lab reaches the VMs with Dial, which opens sockets from a goroutine locked
// to an OS thread that entered the namespace; a small DNS server on the
// bridge serves the lab's names (see DNS). Close kills nothing: the VMs are
// killed by whoever started them, then the namespace is deleted, which
// takes its bridge and taps with it.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netns"
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
	// Log receives notes (stale namespaces removed); default none.
	Log func(format string, a ...any)

	handle netns.NsHandle
	tmp    string
	qemu   string
	taps   atomic.Int32
}

var seq atomic.Int32

// nsPrefix starts every lab namespace's name; the creating process's PID
// follows.
const nsPrefix = "etcd-rescue-lab-"

// EnvQEMU overrides the QEMU binary run inside the namespace.
const EnvQEMU = "ETCD_RESCUE_QEMU"

// New creates the namespace, its loopback and its bridge with gateway/prefix
// (for example "10.88.0.1/24"). Close removes them.
func New(gateway string, log func(format string, a ...any)) (n *Net, err error) {
	if log == nil {
		log = func(string, ...any) {}
	}
	ip, ipnet, err := net.ParseCIDR(gateway)
	if err != nil {
		return nil, fmt.Errorf("lab gateway %q: %w", gateway, err)
	}
	prefix, _ := ipnet.Mask.Size()
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab creates a network namespace, a bridge and tap devices: run it as root")
	}
	for _, tool := range []string{"ip", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: install iproute2 and qemu-system-x86 (make deps)", tool)
		}
	}
	removeStale(log)
	n = &Net{NS: fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), seq.Add(1)), Bridge: "labbr0", Gateway: ip, Prefix: prefix, Log: log}
	if err := run("ip", "netns", "add", n.NS); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	for _, args := range [][]string{
		{"-n", n.NS, "link", "set", "lo", "up"},
		{"-n", n.NS, "link", "add", n.Bridge, "type", "bridge"},
		{"-n", n.NS, "addr", "add", gateway, "dev", n.Bridge},
		{"-n", n.NS, "link", "set", n.Bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return n, err
		}
	}
	if n.handle, err = netns.GetFromName(n.NS); err != nil {
		return n, fmt.Errorf("open lab namespace %s: %w", n.NS, err)
	}
	// QEMU starts inside the namespace; `ip netns exec` execs it, so the
	// PID the caller kills is QEMU's own.
	if n.tmp, err = os.MkdirTemp("", "etcd-rescue-lab-"); err != nil {
		return n, err
	}
	n.qemu = filepath.Join(n.tmp, "qemu-in-lab")
	qbin := os.Getenv(EnvQEMU)
	if qbin == "" {
		qbin = "qemu-system-x86_64"
	}
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", n.NS, qbin)
	return n, os.WriteFile(n.qemu, []byte(script), 0o755)
}

// Close deletes the namespace (with its bridge and taps) and the wrapper.
// Stop the VMs first.
func (n *Net) Close() error {
	var errs []error
	if n.handle != 0 {
		n.handle.Close()
		n.handle = 0
	}
	if out, err := exec.Command("ip", "netns", "del", n.NS).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("remove lab namespace %s: %v: %s", n.NS, err, out))
	}
	if n.tmp != "" {
		errs = append(errs, os.RemoveAll(n.tmp))
	}
	return errors.Join(errs...)
}

// removeStale deletes lab namespaces left by processes that no longer
// exist (a run killed before it cleaned up).
func removeStale(log func(string, ...any)) {
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
			continue // its process still runs
		}
		if b, err := exec.Command("ip", "netns", "del", f[0]).CombinedOutput(); err != nil {
			log("stale lab namespace %s: %v: %s", f[0], err, b)
		} else {
			log("removed stale lab namespace %s", f[0])
		}
	}
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Tap creates a tap device on the bridge and returns the QEMU arguments of
// a virtio NIC on it with the MAC address mac. The tap goes with the
// namespace.
func (n *Net) Tap(mac string) ([]string, error) {
	tap := fmt.Sprintf("labtap%d", n.taps.Add(1))
	if err := run("ip", "-n", n.NS, "tuntap", "add", "dev", tap, "mode", "tap"); err != nil {
		return nil, err
	}
	if err := run("ip", "-n", n.NS, "link", "set", tap, "master", n.Bridge, "up"); err != nil {
		return nil, err
	}
	return []string{"-netdev", "tap,id=lab0,ifname=" + tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=lab0,mac=" + mac}, nil
}

// QEMU is the program that runs QEMU inside the namespace (with QEMU's
// arguments).
func (n *Net) QEMU() string { return n.qemu }

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

// Package kubelet is the init of the lab master OS (`etcd-rescue-lab
// lab-kubelet`, started by the kernel as /init), and the lab's only
// stand-in: it plays the master's kubelet and systemd. As PID 1 it mounts
// the kernel filesystems, loads the image's modules, gives the node its lab
// address, mounts the master's disk, and then, every second:
//
//   - runs the etcd static pod exactly as its manifest on the master's disk
//     says (command, args, env, hostPath volumes through manifest.Invocation
//     and OnHost), after refusing a manifest the kubelet would refuse, with
//     /run/etcd/environment written as OpenShift's discovery init container
//     does (from the DNS SRV records of --discovery-srv); it restarts etcd
//     when it exits and when the manifest changes;
//   - runs the systemd services enabled in multi-user.target.wants on the
//     master's disk (the recovery service the restore installs), chrooted
//     into the master's root, with their Restart= policy.
//
// Configuration comes from the kernel command line: lab.node (node name),
// lab.ip (address/prefix), lab.dns (name server), lab.disk (default
// /dev/vda). It prints LAB-OS-READY once the disk is mounted and never
// exits: the lab powers the VM off from outside.
package kubelet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/netup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// Root is where the master's disk is mounted.
const Root = "/master"

// ModulesLoad lists the modules to load, dependencies first.
const ModulesLoad = "/etc/lab/modules.load"

type config struct {
	node, ip, dns, disk string
	prefix              int
}

// Main runs the lab master OS as PID 1 and never returns: a failure is
// printed and the node idles. Kernel messages and its lines go to the
// console.
func Main() {
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := run(); err != nil {
		logf("LAB-OS-FAILED: %v", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stdout, "kubelet: "+format+"\n", a...)
}

func run() error {
	if err := mountSystem(); err != nil {
		return fmt.Errorf("mount kernel filesystems: %w", err)
	}
	cfg, err := readConfig()
	if err != nil {
		return err
	}
	loadModules()
	if err := unix.Sethostname([]byte(cfg.node)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	ctx := context.Background()
	if err := netup.Static(ctx, plan.Member{Name: cfg.node, IP: cfg.ip, Prefix: cfg.prefix}, 20*time.Second, os.Stdout); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	resolv := ""
	if cfg.dns != "" {
		resolv = "nameserver " + cfg.dns + "\noptions timeout:1 attempts:3\n"
	}
	if err := os.WriteFile("/etc/resolv.conf", []byte(resolv), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile("/etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		return err
	}
	if err := mountDisk(cfg.disk); err != nil {
		return err
	}
	logf("LAB-OS-READY node %s ip %s/%d disk %s", cfg.node, cfg.ip, cfg.prefix, cfg.disk)
	k := &kubelet{cfg: cfg, pods: map[string]*pod{}, units: map[string]*unit{}}
	k.loop(ctx)
	return nil
}

func readConfig() (config, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return config{}, err
	}
	c := config{disk: "/dev/vda", prefix: 24}
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "lab.node":
			c.node = v
		case "lab.ip":
			ip, pfx, ok := strings.Cut(v, "/")
			c.ip = ip
			if ok {
				n, err := strconv.Atoi(pfx)
				if err != nil {
					return c, fmt.Errorf("lab.ip=%s: prefix %q is not a number", v, pfx)
				}
				c.prefix = n
			}
		case "lab.dns":
			c.dns = v
		case "lab.disk":
			c.disk = v
		}
	}
	if c.node == "" || net.ParseIP(c.ip) == nil {
		return c, fmt.Errorf("the kernel command line needs lab.node=NAME and lab.ip=ADDR/PREFIX (got %q)", strings.TrimSpace(string(b)))
	}
	return c, nil
}

func mountSystem() error {
	for _, m := range []struct {
		src, target, fstype string
		flags               uintptr
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("%s: %w", m.target, err)
		}
	}
	return nil
}

func loadModules() {
	b, err := os.ReadFile(ModulesLoad)
	if err != nil {
		return
	}
	n, failed := 0, 0
	for _, p := range strings.Fields(string(b)) {
		f, err := os.Open(p)
		if err != nil {
			failed++
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			logf("module %s: %v", p, err)
			failed++
			continue
		}
		n++
	}
	logf("modules: %d loaded, %d failed", n, failed)
}

// mountDisk waits for the master's disk and mounts it read-write.
func mountDisk(dev string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(dev); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the master's disk %s did not appear within 20s", dev)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.MkdirAll(Root, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, Root, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, Root, err)
	}
	return nil
}

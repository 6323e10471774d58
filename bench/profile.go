package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/fixture"
)

// cpuProfile is the top of a CPU profile of one etcd-rescue restore.
type cpuProfile struct {
	size int64
	top  string // `go tool pprof -top` output, header and top entries
}

// profileRestore runs one more (untimed) etcd-rescue restore of snap with
// a CPU profile (ETCD_RESCUE_CPUPROFILE) and returns its top entries.
func profileRestore(c config, snap string) (*cpuProfile, error) {
	ca, err := pki.NewCA("bench", time.Hour)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(c.work, "root")
	os.RemoveAll(root)
	defer os.RemoveAll(root)
	if _, err := fixture.Write(root, fixture.Master{Profile: "kubeadm", NodeName: member, MemberName: member, IP: "127.0.0.1"}, ca); err != nil {
		return nil, err
	}
	prof := filepath.Join(c.work, "restore.pprof")
	dropCaches()
	cmd := exec.Command(c.rescue, "restore", "--root", root, "--backup", snap, "--snapshot-only", "--profile", "kubeadm",
		"--name", member, "--initial-cluster", member+"="+peer, "--revision-bump", "1000000")
	cmd.Env = append(os.Environ(), "ETCD_RESCUE_CPUPROFILE="+prof)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("profiled restore: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", c.rescue, prof).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// drop the file/type/time header lines; keep duration, totals, rows
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return &cpuProfile{size: fileSize(snap), top: strings.Join(keep, "\n")}, nil
}

func (p *cpuProfile) markdown() string {
	return fmt.Sprintf("\n### CPU profile of one etcd-rescue restore at %s\n\n"+
		"`ETCD_RESCUE_CPUPROFILE=FILE etcd-rescue restore …`, then `go tool pprof -top`; the page cache was dropped first, "+
		"so the wall time (Duration) above the CPU samples is time spent waiting for the disk.\n\n```\n%s\n```\n", mib(p.size), p.top)
}

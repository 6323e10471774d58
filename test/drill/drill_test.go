// Package drill_test runs the QEMU lab drill (package test/qemu/lab/drill) with the
// rescue image built from this tree, and the corrupted-backup case.
//
// Run it with `make e2e` (as root: it creates a network namespace).
// DRILL_KEYS sets the number of keys (default 10,000), DRILL_JSON a file
// for the JSON report.
package drill_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/drill"
)

func drillKeys(t *testing.T) int {
	if s := os.Getenv("DRILL_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("DRILL_KEYS=%q: give a number of keys, at least 100", s)
		}
		return n
	}
	return 10000
}

// TestDrill runs the whole recovery on QEMU VMs with OpenShift 4.3 masters.
func TestDrill(t *testing.T) {
	runDrill(t, profile.OpenShift43, drillKeys(t), plan.SourceBackup)
}

// TestDrillKubeadm runs it with kubeadm masters (stacked etcd whose
// manifest names the initial cluster by IP, certificates under
// /etc/kubernetes/pki/etcd), with fewer keys, restoring from the
// survivor's own data (source: survivor-data): the backup is stale, and
// every key written after it must be there too.
func TestDrillKubeadm(t *testing.T) {
	runDrill(t, profile.Kubeadm, 2000, plan.SourceSurvivorData)
}

func runDrill(t *testing.T, prof string, keys int, source string) {
	rep, err := drill.Run(context.Background(), drill.Options{
		Keys: keys, Profile: prof, Source: source, Kernel: lab.kernel, Modules: lab.modules, RescueDir: lab.rescueDir,
		LabBinary: lab.labBinary, Etcd: lab.etcd, WorkDir: t.TempDir(), Accel: lab.accel, Log: t.Logf,
	})
	var b bytes.Buffer
	rep.Print(&b)
	fmt.Fprintf(&b, "  lab built in %.0fs (rescue initramfs %.1f MiB zstd)\n", lab.buildTime.Seconds(), float64(lab.rescueSize)/(1<<20))
	t.Log(b.String())
	fmt.Print(b.String())
	if p := os.Getenv("DRILL_JSON"); p != "" && prof == profile.OpenShift43 {
		if werr := os.WriteFile(p, rep.JSON(), 0o644); werr != nil {
			t.Error(werr)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

package drill_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/image"
	"github.com/etcd-rescue/etcd-rescue/initrd"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// The lab's inputs, built once by TestMain.
var lab struct {
	root, tmp       string
	kernel, modules string
	binary          string // etcd-rescue, the rescue image's init
	labBinary       string // etcd-rescue-lab, the lab master OS's init
	etcd            string
	rescueDir       string // pxe files of the rescue image
	rescueCmdline   string
	accel           string
	buildTime       time.Duration
	rescueSize      int64
}

const drillVersion = "drill"

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/drill:", err)
		code = 1
	}
	if lab.tmp != "" {
		os.RemoveAll(lab.tmp)
	}
	os.Exit(code)
}

// setup builds etcd-rescue, etcd-rescue-lab, etcd and the rescue image (pxe files). A
// missing prerequisite fails the package: the drill is never skipped.
func setup(m *testing.M) (int, error) {
	if os.Geteuid() != 0 {
		return 1, fmt.Errorf("the drill creates a network namespace, a bridge and tap devices: run it as root")
	}
	start := time.Now()
	root, err := initrd.FindModuleRoot("")
	if err != nil {
		return 1, err
	}
	lab.root = root
	if lab.kernel, lab.modules, err = qemu.Kernel(root); err != nil {
		return 1, err
	}
	if err := qemu.RequireTools("qemu-system-x86_64", "mkfs.ext4", "debugfs", "e2fsck", "ip"); err != nil {
		return 1, err
	}
	if lab.tmp, err = os.MkdirTemp("", "etcd-rescue-drill-"); err != nil {
		return 1, err
	}
	lab.binary = filepath.Join(lab.tmp, "etcd-rescue")
	lab.labBinary = filepath.Join(lab.tmp, "etcd-rescue-lab")
	lab.etcd = filepath.Join(lab.tmp, "etcd")
	if err := qemu.Build(root, "./cmd/etcd-rescue", lab.binary, qemu.BinaryFlags(drillVersion)); err != nil {
		return 1, err
	}
	if err := qemu.Build(root, "./cmd/etcd-rescue-lab", lab.labBinary, qemu.BinaryFlags(drillVersion)); err != nil {
		return 1, err
	}
	if err := qemu.Build(root, "go.etcd.io/etcd/server/v3", lab.etcd, "-s -w"); err != nil {
		return 1, err
	}
	lab.rescueDir = filepath.Join(lab.tmp, "rescue")
	var log strings.Builder
	rep, err := image.BuildRescue(context.Background(), image.Rescue{
		Initrd:  initrd.Config{Binary: lab.binary, ModulesDir: lab.modules, GoModDir: root, Log: &log},
		Kernel:  lab.kernel,
		Version: drillVersion,
		Format:  "pxe",
		Out:     lab.rescueDir,
	})
	if err != nil {
		return 1, fmt.Errorf("build rescue image: %w\n%s", err, log.String())
	}
	lab.rescueSize = rep.Initrd.Compressed
	cmdline, err := os.ReadFile(filepath.Join(lab.rescueDir, "cmdline"))
	if err != nil {
		return 1, err
	}
	lab.rescueCmdline = strings.TrimSpace(string(cmdline))
	lab.accel = qemu.DetectAccel(lab.kernel)
	lab.buildTime = time.Since(start)
	fmt.Printf("drill lab built in %s: rescue initramfs %s (zstd); QEMU accelerator %s\n",
		lab.buildTime.Round(time.Second), initrd.MiB(lab.rescueSize), lab.accel)
	return m.Run(), nil
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

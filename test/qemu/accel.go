package qemu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

var (
	accelOnce sync.Once
	accel     string
)

// DetectAccel returns "kvm" when KVM really runs a guest here, else "tcg".
// $ETCD_RESCUE_ACCEL decides when set. /dev/kvm that opens is not enough:
// some nested or sandboxed hosts accept KVM_CREATE_VM and then never run
// the guest, so this boots kernel (with no initramfs) under KVM and waits a
// few seconds for its first console line. The answer is computed once.
func DetectAccel(kernel string) string {
	accelOnce.Do(func() {
		accel = detectAccel(kernel)
	})
	return accel
}

func detectAccel(kernel string) string {
	if a := os.Getenv(EnvAccel); a != "" {
		return a
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	qemu := os.Getenv(EnvQEMU)
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, qemu, "-accel", "kvm", "-m", "256", "-nodefaults", "-display", "none",
		"-serial", "stdio", "-no-reboot", "-nic", "none", "-kernel", kernel, "-append", "console=ttyS0 panic=-1")
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run()
	if strings.Contains(out.String(), "Linux version") {
		return "kvm"
	}
	return "tcg"
}

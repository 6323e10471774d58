package qemu

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/etcd-rescue/etcd-rescue/image"
)

// Kernel returns the kernel the test VMs boot and its modules folder:
// $ETCD_RESCUE_KERNEL and $ETCD_RESCUE_MODULES, else the Debian kernel
// `make kernel` cached under the module root.
func Kernel(root string) (kernel, modules string, err error) {
	kernel, modules = os.Getenv("ETCD_RESCUE_KERNEL"), os.Getenv("ETCD_RESCUE_MODULES")
	if kernel != "" {
		return kernel, modules, nil
	}
	if kernel, modules, err = image.CachedKernel(root); err != nil {
		return "", "", fmt.Errorf("%w (or set ETCD_RESCUE_KERNEL and ETCD_RESCUE_MODULES)", err)
	}
	return kernel, modules, nil
}

// RequireTools says which tool is missing and that `make deps` installs it.
func RequireTools(tools ...string) error {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: run `make deps`", tool)
		}
	}
	return nil
}

// Build builds pkg of the module at root, static, into out.
func Build(root, pkg, out, ldflags string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// BinaryFlags are the link flags of a test build of etcd-rescue that
// reports version.
func BinaryFlags(version string) string {
	return "-s -w -buildid= -X github.com/etcd-rescue/etcd-rescue/internal/version.Version=" + version
}

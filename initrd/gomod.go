package initrd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// URootVersion is the u-root release the image's commands come from when
// the build info of this binary does not say.
const URootVersion = "v0.16.0"

const urootModule = "github.com/u-root/u-root"

// urootVersion is the u-root version this binary was built against.
func urootVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == urootModule && strings.HasPrefix(d.Version, "v") {
				return d.Version
			}
		}
	}
	return URootVersion
}

// TempModule writes a throwaway Go module in dir that requires the u-root
// commands at the version this binary was built against, so the busybox can
// be built outside the etcd-rescue source tree. `go get` resolves them from
// the module cache, or from the Go module proxy when the cache lacks them.
func TempModule(ctx context.Context, dir string, commands []string, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module etcd-rescue.local/initrd\n\ngo 1.24\n"), 0o644); err != nil {
		return err
	}
	v := urootVersion()
	args := []string{"get"}
	for _, c := range commands {
		args = append(args, c+"@"+v)
	}
	fmt.Fprintf(log, "initrd: no etcd-rescue source tree here: fetching u-root %s commands into a temporary module\n", v)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initrd: go get u-root %s commands (needs the Go module cache or the Go module proxy): %v\n%s", v, err, out)
	}
	return nil
}

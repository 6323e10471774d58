package initrd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBaseArchive(t *testing.T) {
	k := testKmods(t)
	r := k.Resolve([]string{"vfat", "virtio_blk"})
	boot := k.Resolve([]string{"vfat"})
	for _, p := range r.Load {
		full := filepath.Join(k.Dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("ELF "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, err := baseArchive(k, "6.1.0-test", r.Load, boot.Load, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, ok := a.Get(strings.TrimPrefix(ModulesLoadList, "/"))
	if !ok {
		t.Fatalf("no %s in %s", ModulesLoadList, a)
	}
	b := make([]byte, list.FileSize)
	if _, err := list.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	want := "/lib/modules/6.1.0-test/kernel/fs/fat/fat.ko\n/lib/modules/6.1.0-test/kernel/fs/fat/vfat.ko\n"
	if string(b) != want {
		t.Errorf("load list =\n%s\nwant\n%s", b, want)
	}
	for _, name := range []string{
		"dev/console", "lib/modules/6.1.0-test/kernel/fs/fat/vfat.ko",
		"lib/modules/6.1.0-test/modules.dep", "lib/modules/6.1.0-test/kernel/fs", "etc/etcd-rescue",
		"lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko", "lib/modules/6.1.0-test/modules.alias",
		"lib/modules/6.1.0-test/modules.softdep", "lib/modules/6.1.0-test/modules.builtin",
	} {
		if _, ok := a.Get(name); !ok {
			t.Errorf("archive lacks %s", name)
		}
	}
}

func TestFindModuleRoot(t *testing.T) {
	root, err := FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Error(err)
	}
	if _, err := FindModuleRoot(t.TempDir()); err == nil {
		t.Error("found a module root above a temporary folder")
	}
}

func TestTempModuleResolvesCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gomod")
	var log strings.Builder
	if err := TempModule(context.Background(), dir, DefaultCommands, &log); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"list"}, DefaultCommands...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list in the temporary module: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "\n"); got != len(DefaultCommands) {
		t.Errorf("go list found %d packages, want %d:\n%s", got, len(DefaultCommands), out)
	}
}

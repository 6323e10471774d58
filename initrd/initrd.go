// Package initrd builds the rescue image's initramfs: u-root's init, a small
// busybox of u-root commands (a shell and the tools an operator needs when a
// recovery stops), the etcd-rescue binary as the uinit, and the kernel
// modules a rescue boot needs with their dependencies. The output is a
// zstd-compressed newc cpio that is reproducible: the same inputs give the
// same bytes (sorted entries, zero mtimes, uids and inode numbers).
package initrd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// ModulesLoadList is where the image lists the modules every boot loads
// (Config.BootModules, none by default), one absolute path a line,
// dependencies first; the boot program loads them in that order. Drivers
// are loaded by what the hardware asks for, through the trimmed
// modules.alias beside the modules, and filesystems by the first mount of
// their type.
const ModulesLoadList = "/etc/etcd-rescue/modules.load"

// BinaryPath is where the etcd-rescue binary lives in the image.
const BinaryPath = "/bin/etcd-rescue"

// UinitArgs are the arguments u-root's init passes to the uinit.
var UinitArgs = []string{"boot"}

// DefaultCommands are the u-root commands built into the image's busybox:
// init, a shell, and what an operator needs to look around when a recovery
// stops (etcd-rescue.shell=1).
var DefaultCommands = []string{
	"github.com/u-root/u-root/cmds/core/init",
	"github.com/u-root/u-root/cmds/core/gosh",
	"github.com/u-root/u-root/cmds/core/cat",
	"github.com/u-root/u-root/cmds/core/cp",
	"github.com/u-root/u-root/cmds/core/dmesg",
	"github.com/u-root/u-root/cmds/core/ls",
	"github.com/u-root/u-root/cmds/core/mkdir",
	"github.com/u-root/u-root/cmds/core/mount",
	"github.com/u-root/u-root/cmds/core/umount",
	"github.com/u-root/u-root/cmds/core/mv",
	"github.com/u-root/u-root/cmds/core/ps",
	"github.com/u-root/u-root/cmds/core/sync",
	"github.com/u-root/u-root/cmds/core/lsmod",
	"github.com/u-root/u-root/cmds/core/shutdown",
	"github.com/u-root/u-root/cmds/exp/modprobe",
}

// Config says what goes into the initramfs.
type Config struct {
	// Binary is the etcd-rescue binary to run as the uinit. It must be
	// static (CGO_ENABLED=0); build it with -trimpath and -buildid= for
	// reproducible images.
	Binary string
	// ModulesDir is the kernel's /lib/modules/<version> directory, indexed
	// by depmod (it holds modules.dep).
	ModulesDir string
	// Drivers are the device drivers to carry; the boot loads those the
	// hardware matches. Default DriversFor(the kernel version).
	Drivers []string
	// BootModules are loaded at every boot, whatever the hardware.
	// Default none.
	BootModules []string
	// OnDemand are carried for the steps that load them. Default
	// OnDemandModules and the FilesystemModules.
	OnDemand []string
	// Commands are the u-root commands to build into the busybox.
	// Default DefaultCommands.
	Commands []string
	// Tools are the build host's programs carried with their libraries
	// (see ToolFiles). Default Tools.
	Tools []string
	// GoModDir is a Go module directory whose go.mod requires u-root;
	// the u-root command sources are found through it (in the module
	// cache, or from the Go module proxy). Default: the etcd-rescue
	// source tree that holds the current directory, else a temporary
	// module made by TempModule.
	GoModDir string
	// TempDir holds the build's scratch files. Default os.TempDir().
	TempDir string
	// Log receives progress lines. Default io.Discard.
	Log io.Writer
}

// Result describes a built initramfs.
type Result struct {
	// KernelVersion is the modules directory's version (its base name).
	KernelVersion string
	// Modules are every carried module (paths under ModulesDir), in an
	// order that loads dependencies first.
	Modules Resolution
	// Boot is the load order of the modules every boot loads.
	Boot Resolution
	// Size is the uncompressed cpio size; Compressed the written file's.
	Size, Compressed int64
}

// Build writes the compressed initramfs to out.
func Build(ctx context.Context, cfg Config, out string) (*Result, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if len(cfg.OnDemand) == 0 {
		cfg.OnDemand = append(filesystemModules(), OnDemandModules...)
	}
	if len(cfg.Commands) == 0 {
		cfg.Commands = DefaultCommands
	}
	if len(cfg.Tools) == 0 {
		cfg.Tools = Tools
	}
	if cfg.Binary == "" {
		return nil, errors.New("initrd: no etcd-rescue binary given")
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("initrd: etcd-rescue binary: %w", err)
	}
	kmods, err := ReadKmods(cfg.ModulesDir)
	if err != nil {
		return nil, err
	}
	res := &Result{KernelVersion: filepath.Base(filepath.Clean(cfg.ModulesDir))}
	if len(cfg.Drivers) == 0 {
		cfg.Drivers = DriversFor(res.KernelVersion)
	}
	all := append(append(append([]string(nil), cfg.Drivers...), cfg.BootModules...), cfg.OnDemand...)
	if err := checkPresent(kmods, res.KernelVersion, all); err != nil {
		return nil, err
	}
	res.Modules = kmods.Resolve(all)
	res.Boot = kmods.Resolve(cfg.BootModules)
	fmt.Fprintf(cfg.Log, "initrd: kernel %s: %d modules carried (%d drivers, loaded as the hardware needs them), %d loaded at every boot, built in: %s\n",
		res.KernelVersion, len(res.Modules.Load), len(cfg.Drivers), len(res.Boot.Load), listOrNone(res.Modules.Builtin))

	tools, err := ToolRecords(cfg.Tools)
	if err != nil {
		return nil, err
	}
	base, err := baseArchive(kmods, res.KernelVersion, res.Modules.Load, res.Boot.Load, tools)
	if err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp(cfg.TempDir, "etcd-rescue-initrd-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if cfg.GoModDir == "" {
		if dir, err := FindModuleRoot(""); err == nil {
			cfg.GoModDir = dir
		} else {
			cfg.GoModDir = filepath.Join(tmp, "gomod")
			if err := TempModule(ctx, cfg.GoModDir, cfg.Commands, cfg.Log); err != nil {
				return nil, err
			}
		}
	}
	cpioPath := filepath.Join(tmp, "initramfs.cpio")

	fmt.Fprintf(cfg.Log, "initrd: building u-root busybox (%d commands) from %s\n", len(cfg.Commands), cfg.GoModDir)
	goroot, err := goRoot()
	if err != nil {
		return nil, err
	}
	// goshsmall: gosh reads plain lines instead of running a full-screen
	// line editor, which does not survive a serial console.
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"),
		golang.WithGOROOT(goroot), golang.WithWorkingDir(cfg.GoModDir), golang.WithBuildTag("goshsmall"))
	logger := llog.New(slog.LevelWarn, llog.WritePrintf(cfg.Log))
	binSrc, err := filepath.Abs(cfg.Binary)
	if err != nil {
		return nil, err
	}
	if err := uimage.Create(logger,
		uimage.WithReplaceEnv(env),
		uimage.WithTempDir(tmp),
		uimage.WithBusyboxCommands(cfg.Commands...),
		uimage.WithInit("init"),
		uimage.WithShell("gosh"),
		uimage.WithFiles(binSrc+":"+strings.TrimPrefix(BinaryPath, "/")),
		uimage.WithUinit(BinaryPath, UinitArgs...),
		uimage.WithBaseArchive(base),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(cpioPath),
	); err != nil {
		return nil, fmt.Errorf("initrd: u-root image: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	st, err := os.Stat(cpioPath)
	if err != nil {
		return nil, err
	}
	res.Size = st.Size()
	n, err := compressFile(cpioPath, out)
	if err != nil {
		return nil, fmt.Errorf("initrd: compress: %w", err)
	}
	res.Compressed = n
	fmt.Fprintf(cfg.Log, "initrd: %s: %s uncompressed, %s zstd\n", out, MiB(res.Size), MiB(res.Compressed))
	return res, nil
}

// Skeleton is what an init needs in its initramfs before it mounts
// anything: the console and null devices the kernel and Go's runtime open
// before devtmpfs is mounted, and the mount points and folders it uses.
func Skeleton() []cpio.Record {
	return []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.Directory("etc", 0o755),
		cpio.Directory("proc", 0o555),
		cpio.Directory("run", 0o755),
		cpio.Directory("sys", 0o555),
		cpio.Directory("tmp", 0o1777),
	}
}

// baseArchive holds what u-root does not add itself: the console device the
// kernel opens for init before devtmpfs is mounted, the carried modules with
// their index trimmed to them (modules.dep, modules.alias, modules.softdep,
// and modules.builtin), the list of modules every boot loads, if any, and
// the extra records (the tools and their libraries).
func baseArchive(k *Kmods, version string, carried, boot []string, extra []cpio.Record) (*cpio.Archive, error) {
	recs := append(Skeleton(), cpio.Directory("mnt", 0o755), cpio.Directory("etc/etcd-rescue", 0o755))
	mods, _, err := k.Records(version, carried)
	if err != nil {
		return nil, err
	}
	dir := path.Join("lib/modules", version)
	recs = append(recs, mods...)
	recs = append(recs,
		cpio.StaticFile(path.Join(dir, "modules.dep"), k.DepFile(carried), 0o644),
		cpio.StaticFile(path.Join(dir, "modules.alias"), k.AliasFile(carried), 0o644),
		cpio.StaticFile(path.Join(dir, "modules.softdep"), k.SoftdepFile(carried), 0o644),
		cpio.StaticFile(path.Join(dir, "modules.builtin"), k.BuiltinFile(), 0o644),
	)
	if len(boot) > 0 {
		var list strings.Builder
		for _, p := range boot {
			list.WriteString("/" + path.Join("lib/modules", version, p) + "\n")
		}
		recs = append(recs, cpio.StaticFile(strings.TrimPrefix(ModulesLoadList, "/"), list.String(), 0o644))
	}
	recs = append(recs, extra...)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	// A folder both parts hold (lib) is written once.
	uniq := recs[:0]
	for i, r := range recs {
		if i > 0 && r.Name == recs[i-1].Name {
			continue
		}
		uniq = append(uniq, r)
	}
	return cpio.ArchiveFromRecords(uniq)
}

// Records returns the cpio records of the modules in load (under
// lib/modules/<version>, with their parent folders) and the load list: one
// absolute path per line, in load order, for the init's module loader.
func (k *Kmods) Records(version string, load []string) (recs []cpio.Record, list string, err error) {
	modRoot := path.Join("lib/modules", version)
	dirs := map[string]bool{}
	var b strings.Builder
	for _, p := range load {
		data, err := os.ReadFile(filepath.Join(k.Dir, p))
		if err != nil {
			return nil, "", fmt.Errorf("initrd: module: %w", err)
		}
		dst := path.Join(modRoot, p)
		for d := path.Dir(dst); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
		recs = append(recs, cpio.StaticRecord(data, cpio.Info{Name: dst, Mode: cpio.S_IFREG | 0o644}))
		b.WriteString("/" + dst + "\n")
	}
	for d := range dirs {
		recs = append(recs, cpio.Directory(d, 0o755))
	}
	return recs, b.String(), nil
}

// FindModuleRoot walks up from dir (default: the current directory) to the
// etcd-rescue module root, whose go.mod lists u-root.
func FindModuleRoot(dir string) (string, error) {
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		dir = wd
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("github.com/u-root/u-root ")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("initrd: no go.mod requiring github.com/u-root/u-root above %s: run from the etcd-rescue source tree, or give a Go module directory that requires it", dir)
		}
	}
}

// goRoot finds the Go toolchain the busybox is built with: $GOROOT, else
// what `go env GOROOT` says (a -trimpath binary does not know its own).
func goRoot() (string, error) {
	if r := os.Getenv("GOROOT"); r != "" {
		return r, nil
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("initrd: building u-root's commands needs the Go toolchain on PATH: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// MiB formats a byte count for reports.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
)

// kernelImage is the rescue image built from one kernel flavour, with the
// issue-15 budgets: initramfs size, boot to the first console line, and
// first line to the disks being listed with the disks on virtio and on
// AHCI (q35's SATA controller).
type kernelImage struct {
	flavour, version string
	compression      string // of the kernel image itself (its config's CONFIG_KERNEL_*)
	compressed       int64
	firstLine        []time.Duration
	kernelRunning    []time.Duration            // QEMU start → the decompressed kernel's first instruction (bare kernel boots)
	toDisks          map[string][]time.Duration // by controller
	notFound         map[string]string          // controller -> the disks line when it found none
	errs             []string
}

// controllers are the ways the budget boots attach the two disks.
var controllers = []struct{ name, root, backup string }{
	{"virtio", "virtio-blk-pci", "virtio-blk-pci"},
	{"AHCI", "ide-hd,bus=ide.0", "ide-hd,bus=ide.1"},
}

const kernelsStart = "<!-- kernel images: `go run ./bench -image-only` rewrites this section -->"
const kernelsEnd = "<!-- end of kernel images -->"

// kernelDir resolves a cached kernel (scripts/fetch-kernel.sh's folder:
// boot/vmlinuz-*, lib/modules/*) to its vmlinuz and modules folder.
func kernelDir(dir string) (kernel, modules string, err error) {
	ks, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	ms, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if len(ks) != 1 || len(ms) != 1 {
		return "", "", fmt.Errorf("no kernel in %s: run `make kernel`", dir)
	}
	return ks[0], ms[0], nil
}

// measureKernels builds a pxe image from each flavour=folder of kernels and
// boots each boots times per controller. The boots alternate between the
// flavours, so a load that comes and goes on a shared machine weighs on
// both alike.
func measureKernels(c config, kernels string, boots int) ([]*kernelImage, error) {
	disks, cfg, err := budgetInputs(c.work)
	if err != nil {
		return nil, err
	}
	var out []*kernelImage
	imgs := map[*kernelImage][3]string{} // vmlinuz, initrd, cmdline
	for _, kv := range strings.Split(kernels, ",") {
		flavour, dir, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("-kernels: %q is not flavour=folder", kv)
		}
		kernel, modules, err := kernelDir(dir)
		if err != nil {
			return nil, err
		}
		ki := &kernelImage{flavour: flavour, version: filepath.Base(modules), toDisks: map[string][]time.Duration{}, notFound: map[string]string{},
			compression: kernelCompression(dir)}
		img := filepath.Join(c.work, "kernel-image-"+flavour)
		os.RemoveAll(img)
		cmd := exec.Command(c.rescue, "build-image", "--format", "pxe", "--out", img, "--binary", c.rescue, "--kernel", kernel, "--modules", modules)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build-image (%s kernel): %v\n%s", flavour, err, b)
		}
		ki.compressed = fileSize(filepath.Join(img, "initrd.img"))
		cmdline, err := os.ReadFile(filepath.Join(img, "cmdline"))
		if err != nil {
			return nil, err
		}
		imgs[ki] = [3]string{filepath.Join(img, "vmlinuz"), filepath.Join(img, "initrd.img"), strings.TrimSpace(string(cmdline))}
		out = append(out, ki)
	}
	for i := 0; i < boots; i++ {
		for _, ki := range out {
			if d, err := kernelRunning(imgs[ki][0]); err != nil {
				ki.errs = append(ki.errs, fmt.Sprintf("%s, bare kernel: %v", ki.flavour, err))
			} else {
				ki.kernelRunning = append(ki.kernelRunning, d)
			}
		}
		for _, ctl := range controllers {
			for _, ki := range out {
				in := imgs[ki]
				first, toDisks, line, err := budgetBoot(in[0], in[1], in[2], cfg, disks, ctl.root, ctl.backup)
				if err != nil {
					ki.errs = append(ki.errs, fmt.Sprintf("%s, %s: %v", ki.flavour, ctl.name, err))
					continue
				}
				ki.firstLine = append(ki.firstLine, first)
				if strings.HasPrefix(line, "disks: none") {
					ki.notFound[ctl.name] = line
					continue
				}
				ki.toDisks[ctl.name] = append(ki.toDisks[ctl.name], toDisks)
			}
		}
	}
	for _, ki := range out {
		fmt.Println(ki.line())
	}
	return out, nil
}

// kernelCompression reads how the kernel image compresses itself from the
// package's config (boot/config-*): CONFIG_KERNEL_XZ=y is "xz".
func kernelCompression(dir string) string {
	cfgs, _ := filepath.Glob(filepath.Join(dir, "boot", "config-*"))
	if len(cfgs) != 1 {
		return "?"
	}
	b, err := os.ReadFile(cfgs[0])
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "CONFIG_KERNEL_"); ok && strings.HasSuffix(name, "=y") {
			return strings.ToLower(strings.TrimSuffix(name, "=y"))
		}
	}
	return "?"
}

// budgetInputs makes the verify config and the two disks: a master root
// (etc/kubernetes/manifests) and a backup volume labelled backup.
func budgetInputs(work string) (disks [2]string, cfgPath string, err error) {
	dir := filepath.Join(work, "kernel-budget")
	if err := os.MkdirAll(filepath.Join(dir, "root/etc/kubernetes/manifests"), 0o755); err != nil {
		return disks, "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, "backup/etcd"), 0o755); err != nil {
		return disks, "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "backup/etcd/snapshot_2026-01-02_030405.db"), []byte("not a snapshot"), 0o644); err != nil {
		return disks, "", err
	}
	for i, d := range []struct{ src, label string }{{"root", ""}, {"backup", "backup"}} {
		p := filepath.Join(dir, d.src+".ext4")
		os.Remove(p)
		args := []string{"-q", "-F", "-t", "ext4", "-d", filepath.Join(dir, d.src)}
		if d.label != "" {
			args = append(args, "-L", d.label)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return disks, "", err
		}
		if err := os.Truncate(p, 32<<20); err != nil {
			return disks, "", err
		}
		if b, err := exec.Command("mkfs.ext4", append(args, p)...).CombinedOutput(); err != nil {
			return disks, "", fmt.Errorf("mkfs.ext4: %v: %s", err, b)
		}
		disks[i] = p
	}
	plan := "version: 1\ncluster: {name: bench, domain: bench.example}\nsurvivor: master-0\nmembers:\n" +
		"- {name: master-0, peerURL: \"https://192.0.2.10:2380\"}\n"
	raw, err := ignition.Build(ignition.Options{Plan: []byte(plan), Role: ignition.Role{Role: ignition.RoleVerify, Member: "master-0"}})
	if err != nil {
		return disks, "", err
	}
	cfgPath = filepath.Join(dir, "config.ign")
	return disks, cfgPath, os.WriteFile(cfgPath, raw, 0o644)
}

// budgetBoot boots the image under TCG (q35, 1 vCPU) with the disks on a
// controller and returns QEMU start to the first console line, the first
// line to the "disks:" line, and that line.
func budgetBoot(kernel, initrd, cmdline, cfg string, disks [2]string, rootDev, backupDev string) (first, toDisks time.Duration, line string, err error) {
	args := []string{"-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "1", "-nodefaults", "-display", "none",
		"-serial", "stdio", "-no-reboot", "-nic", "none", "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
		"-fw_cfg", "name=opt/com.coreos/config,file=" + cfg}
	for i, dev := range []string{rootDev, backupDev} {
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=d%d,snapshot=on", disks[i], i),
			"-device", fmt.Sprintf("%s,drive=d%d", dev, i))
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, "", err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, "", err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	type seen struct {
		first, disks time.Duration
		line         string
	}
	done := make(chan seen, 1)
	go func() {
		var s seen
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			t := sc.Text()
			if s.first == 0 && strings.Contains(t, "etcd-rescue ") && strings.Contains(t, " starting") {
				s.first = time.Since(start)
			}
			if i := strings.Index(t, "disks: "); i >= 0 && s.first != 0 {
				s.disks, s.line = time.Since(start), strings.TrimSpace(t[i:])
				done <- s
				return
			}
		}
		done <- s
	}()
	select {
	case s := <-done:
		if s.first == 0 || s.disks == 0 {
			return 0, 0, "", fmt.Errorf("QEMU ended before the first line and the disks line")
		}
		return s.first, s.disks - s.first, s.line, nil
	case <-time.After(3 * time.Minute):
		return 0, 0, "", fmt.Errorf("no \"disks:\" line within 3 minutes")
	}
}

// kernelRunning boots the kernel alone (no initramfs, no disks) under TCG
// and returns how long after QEMU's start the kernel began to run: its
// firmware and its own decompression. Each console line carries the
// kernel's clock (printk.time); a line printed as it happens arrives at
// about QEMU start + kernel start + its timestamp, while lines held in the
// buffer until the console registered arrive later, so the smallest
// arrival − timestamp is the kernel's start.
func kernelRunning(kernel string) (time.Duration, error) {
	cmd := exec.Command("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "1", "-nodefaults",
		"-display", "none", "-serial", "stdio", "-no-reboot", "-nic", "none", "-kernel", kernel,
		"-append", "console=ttyS0,115200 printk.time=1 panic=-1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	best := time.Duration(-1)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		arrived := time.Since(start)
		if ts, ok := printkTime(sc.Text()); ok && ts > 0 && (best < 0 || arrived-ts < best) {
			best = arrived - ts
		}
	}
	cmd.Wait()
	if best < 0 {
		return 0, fmt.Errorf("the kernel printed no timestamped line")
	}
	return best, nil
}

// printkTime reads the "[   12.345678]" a kernel console line starts with.
func printkTime(line string) (time.Duration, bool) {
	i, j := strings.Index(line, "["), strings.Index(line, "]")
	if i < 0 || j < i {
		return 0, false
	}
	var sec float64
	if _, err := fmt.Sscanf(strings.TrimSpace(line[i+1:j]), "%f", &sec); err != nil {
		return 0, false
	}
	return time.Duration(sec * float64(time.Second)), true
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// minMedian formats the fastest and the median of ds: on a shared machine
// the fastest is the one the load disturbed least.
func minMedian(ds []time.Duration) string {
	if len(ds) == 0 {
		return "not measured"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("%s / %s", d(s[0]), d(median(s)))
}

func (ki *kernelImage) line() string {
	return fmt.Sprintf("kernel image %s (%s): initramfs %.1f MiB, first line %s, to disks virtio %s, AHCI %s",
		ki.flavour, ki.version, float64(ki.compressed)/(1<<20), minMedian(ki.firstLine), ki.cell("virtio"), ki.cell("AHCI"))
}

// targetRows are the image's boot budgets, met or not, on the medians.
func (ki *kernelImage) targetRows() string {
	var b strings.Builder
	if len(ki.firstLine) > 0 {
		m := median(ki.firstLine)
		fmt.Fprintf(&b, "| boot to the first console line ≤ 5 s under TCG (%s kernel, median) | %s (of which the kernel's own start %s) | %v |\n",
			ki.flavour, d(m), d(median(ki.kernelRunning)), m <= 5*time.Second)
	}
	for _, ctl := range controllers {
		if ds := ki.toDisks[ctl.name]; len(ds) > 0 {
			m := median(ds)
			fmt.Fprintf(&b, "| first line to the disks listed ≤ 3 s, %s (median) | %s | %v |\n", ctl.name, d(m), m <= 3*time.Second)
		} else if l, ok := ki.notFound[ctl.name]; ok {
			fmt.Fprintf(&b, "| first line to the disks listed ≤ 3 s, %s | no disks found (`%s`) | false |\n", ctl.name, l)
		}
	}
	return b.String()
}

// cell is the median first line → disks time on a controller, or what the
// disks line said when it found none.
func (ki *kernelImage) cell(ctl string) string {
	if ds := ki.toDisks[ctl]; len(ds) > 0 {
		return fmt.Sprintf("%s (%d boots)", minMedian(ds), len(ds))
	}
	if l, ok := ki.notFound[ctl]; ok {
		return "**no disks found** (`" + l + "`)"
	}
	return "not measured"
}

// kernelsMarkdown is the section comparing the kernel flavours' images.
func kernelsMarkdown(kis []*kernelImage, load string) string {
	var b strings.Builder
	b.WriteString(kernelsStart + "\n## Rescue image by kernel: generic (default) and cloud\n\n")
	b.WriteString("The same etcd-rescue built into a pxe image from each Debian kernel flavour (`build-image --kernel`), booted under TCG (q35, 1 vCPU) with a verify config and two ext4 disks (a master root and a backup volume) on virtio-blk, then on q35's AHCI controller, the flavours' boots alternating. Times are fastest / median; the first line is `etcd-rescue … starting`, the disks line is `disks: …`, after coldplug loaded the drivers the hardware asks for.\n\n")
	b.WriteString("| kernel | kernel image compression | QEMU start → kernel running | initramfs compressed (≤ 40 MiB) | QEMU start → first line (≤ 5 s) | first line → disks listed, virtio (≤ 3 s) | first line → disks listed, AHCI (≤ 3 s) |\n|---|---|---|---|---|---|---|\n")
	for _, ki := range kis {
		fmt.Fprintf(&b, "| %s `%s` | %s | %s | %.1f MiB | %s | %s | %s |\n", ki.flavour, ki.version, ki.compression, minMedian(ki.kernelRunning),
			float64(ki.compressed)/(1<<20), minMedian(ki.firstLine), ki.cell("virtio"), ki.cell("AHCI"))
	}
	b.WriteString("\nThe kernel image decompresses itself before it runs, and the first-line column includes that. " +
		"\"QEMU start → kernel running\" is measured apart, booting the bare kernel with `printk.time=1`: SeaBIOS, loading, and the decompression. " +
		"Under TCG, xz (Debian's generic kernel) decompresses far more slowly than lz4 (Debian's cloud kernel); on a real CPU either takes a fraction of a second. " +
		"The image boots Debian's kernel as Debian built and signed it: recompressing it would drop the signature Secure Boot checks.\n")
	for _, ki := range kis {
		for _, e := range ki.errs {
			fmt.Fprintf(&b, "\nA boot failed: %s\n", e)
		}
	}
	if load != "" {
		fmt.Fprintf(&b, "\nLoad average when the run started: %s (the machine's 2 cores are shared; TCG times grow with the load).\n", load)
	}
	b.WriteString(kernelsEnd + "\n")
	return b.String()
}

// spliceKernels puts the kernel section into an existing results file in
// place of the previous one (or before the drill section, or at the end).
func spliceKernels(results, section string) string {
	if i, j := strings.Index(results, kernelsStart), strings.Index(results, kernelsEnd); i >= 0 && j > i {
		return results[:i] + section + results[j+len(kernelsEnd)+1:]
	}
	if i := strings.Index(results, "\n## Drill"); i >= 0 {
		return results[:i+1] + section + "\n" + results[i+1:]
	}
	return results + "\n" + section
}

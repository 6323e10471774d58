package main

import (
	"strings"
	"testing"
	"time"
)

func TestSpliceKernelsReplacesOnlyItsSection(t *testing.T) {
	ki := &kernelImage{flavour: "generic", version: "6.1.0-56-amd64", compression: "xz", compressed: 21 << 20,
		firstLine: []time.Duration{3 * time.Second}, kernelRunning: []time.Duration{2 * time.Second}, toDisks: map[string][]time.Duration{"virtio": {time.Second}},
		notFound: map[string]string{"AHCI": "disks: none (15.2s)"}}
	section := kernelsMarkdown([]*kernelImage{ki}, "1.00, 1.00, 1.00")
	for _, want := range []string{"| generic `6.1.0-56-amd64` | xz | 2s / 2s | 21.0 MiB | 3s / 3s | 1s / 1s (1 boots) | **no disks found** (`disks: none (15.2s)`) |"} {
		if !strings.Contains(section, want) {
			t.Errorf("section lacks %q:\n%s", want, section)
		}
	}
	full := "# Benchmarks\n\n## Rescue image\n\nold\n\n## Drill\n\ndrill\n"
	once := spliceKernels(full, section)
	if !strings.Contains(once, "old\n\n"+kernelsStart) || !strings.HasSuffix(once, "## Drill\n\ndrill\n") {
		t.Errorf("first splice did not go before the drill section:\n%s", once)
	}
	again := spliceKernels(once, strings.Replace(section, "21.0 MiB", "22.0 MiB", 1))
	if strings.Count(again, kernelsStart) != 1 || !strings.Contains(again, "22.0 MiB") || strings.Contains(again, "21.0 MiB") {
		t.Errorf("second splice did not replace the section:\n%s", again)
	}
}

func TestPrintkTime(t *testing.T) {
	for line, want := range map[string]time.Duration{
		"[    0.286260] APIC: Switch to symmetric I/O mode setup": 286260 * time.Microsecond,
		"[   12.000000] x": 12 * time.Second,
	} {
		if got, ok := printkTime(line); !ok || got.Round(time.Microsecond) != want {
			t.Errorf("printkTime(%q) = %v, %v; want %v", line, got, ok, want)
		}
	}
	for _, line := range []string{"etcd-rescue v1 starting", "[not a time] x", ""} {
		if _, ok := printkTime(line); ok {
			t.Errorf("printkTime(%q) read a time", line)
		}
	}
}

func TestKernelTargetRows(t *testing.T) {
	ki := &kernelImage{flavour: "generic", firstLine: []time.Duration{7 * time.Second, 6 * time.Second, 8 * time.Second},
		kernelRunning: []time.Duration{3 * time.Second},
		toDisks:       map[string][]time.Duration{"virtio": {2 * time.Second}}, notFound: map[string]string{"AHCI": "disks: none (15s)"}}
	rows := ki.targetRows()
	for _, want := range []string{
		"| boot to the first console line ≤ 5 s under TCG (generic kernel, median) | 7s (of which the kernel's own start 3s) | false |",
		"| first line to the disks listed ≤ 3 s, virtio (median) | 2s | true |",
		"| first line to the disks listed ≤ 3 s, AHCI | no disks found (`disks: none (15s)`) | false |",
	} {
		if !strings.Contains(rows, want) {
			t.Errorf("rows lack %q:\n%s", want, rows)
		}
	}
}

func TestImageOnlyReplacesItsSectionsAndRows(t *testing.T) {
	old := "# Benchmarks\n\n## Offline restore\n\nrestore\n\n## Rescue image\n\nold image\n\n### Boot\n\nold boots\n\n" +
		kernelsStart + "\n## Rescue image by kernel\n\nold kernels\n" + kernelsEnd + "\n\n## Drill\n\ndrill\n\n## Targets\n\n" +
		"| target | measured | met |\n|---|---|---|\n| restore ≤ 0.7× | 0.76 | false |\n| initramfs ≤ 30 MB compressed | 15.4 MiB | true |\n| boot ≤ 5 s under TCG | 2.422s | true |\n| drill ≤ 3 min | 43s | true |\n\nnote\n"
	ki := &kernelImage{flavour: "generic", version: "v", firstLine: []time.Duration{7 * time.Second}, toDisks: map[string][]time.Duration{"virtio": {2 * time.Second}}}
	ir := &imageResult{compressed: 30 << 20, parts: map[string]int64{}}
	rep := &report{image: ir, kernels: []*kernelImage{ki}}
	text := spliceImage(spliceKernels(old, kernelsMarkdown([]*kernelImage{ki}, "")), ir.markdown())
	text = spliceSection(text, "\n## Targets", rep.mergeImageTargets(section(text, "\n## Targets")))
	for _, gone := range []string{"old image", "old boots", "old kernels", "15.4 MiB", "2.422s"} {
		if strings.Contains(text, gone) {
			t.Errorf("%q is still there:\n%s", gone, text)
		}
	}
	for _, kept := range []string{"restore\n", "drill\n", "| restore ≤ 0.7× | 0.76 | false |", "| drill ≤ 3 min | 43s | true |",
		"| initramfs ≤ 40 MiB compressed | 30.0 MiB | true |", "| boot to the first console line ≤ 5 s under TCG (generic kernel, median) | 7s", "\nnote\n"} {
		if !strings.Contains(text, kept) {
			t.Errorf("%q is missing:\n%s", kept, text)
		}
	}
	if strings.Count(text, "## Rescue image\n") != 1 || strings.Count(text, kernelsStart) != 1 {
		t.Errorf("sections doubled:\n%s", text)
	}
}

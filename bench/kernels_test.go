package main

import (
	"strings"
	"testing"
	"time"
)

func TestSpliceKernelsReplacesOnlyItsSection(t *testing.T) {
	ki := &kernelImage{flavour: "generic", version: "6.1.0-56-amd64", compression: "xz", compressed: 21 << 20,
		firstLine: []time.Duration{3 * time.Second}, toDisks: map[string][]time.Duration{"virtio": {time.Second}},
		notFound: map[string]string{"AHCI": "disks: none (15.2s)"}}
	section := kernelsMarkdown([]*kernelImage{ki}, "1.00, 1.00, 1.00")
	for _, want := range []string{"| generic `6.1.0-56-amd64` | xz | 21.0 MiB | 3s / 3s | 1s / 1s (1 boots) | **no disks found** (`disks: none (15.2s)`) |"} {
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

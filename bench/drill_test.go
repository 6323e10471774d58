package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/drill"
)

func TestParseKeys(t *testing.T) {
	if k, err := parseKeys("10000, 100000"); err != nil || len(k) != 2 || k[1] != 100000 {
		t.Fatal(k, err)
	}
	if k, err := parseKeys(""); err != nil || len(k) != 0 {
		t.Fatal(k, err)
	}
	if _, err := parseKeys("10k"); err == nil {
		t.Fatal("10k accepted")
	}
}

func TestDrillError(t *testing.T) {
	stderr := []string{"=== phase verify", `etcd-rescue: DRILL-FAILED: phase "verify": HashKV differs`, "  console: x"}
	if got := drillError(stderr, errors.New("exit status 1")); got != "phase \"verify\": HashKV differs\n  console: x" {
		t.Fatalf("%q", got)
	}
	if got := drillError([]string{"panic: boom"}, errors.New("exit status 2")); got != "exit status 2\npanic: boom" {
		t.Fatalf("%q", got)
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{line: func(l string) { got = append(got, l) }}
	w.Write([]byte("a\nb"))
	w.Write([]byte("c\n"))
	if strings.Join(got, "|") != "a|bc" {
		t.Fatal(got)
	}
}

func TestDrillMarkdown(t *testing.T) {
	// The drill's phases as it names them, the first n, at keys keys.
	phases := func(keys int, n int) []drill.Phase {
		all := []string{"boot 3 masters, form the TLS cluster", fmt.Sprintf("write %d keys", keys), "etcd-rescue backup onto the backup volume",
			fmt.Sprintf("write %d keys after the backup (to be lost)", keys/20), "lose quorum (kill 2 masters, reset the survivor)",
			"restore the survivor (rescue image)", "survivor boots its OS: one-member cluster",
			"join master-3 (rescue image, then its OS)", "join master-4 (rescue image, then its OS)", "verify"}
		var ps []drill.Phase
		for i, name := range all[:n] {
			ps = append(ps, drill.Phase{Name: name, Seconds: float64(10 + i)})
		}
		return ps
	}
	r := &drillResult{runs: []drillRun{
		{keys: 10000, wall: 5 * time.Minute, report: &drill.Report{Accel: "tcg", Keys: 10000, Phases: phases(10000, 10), Recovery: 150, Total: 290}},
		{keys: 100000, wall: 20 * time.Minute, report: &drill.Report{Accel: "tcg", Keys: 100000, Phases: phases(100000, 7), Total: 1190},
			failedPhase: "join master-3 (rescue image, then its OS)", err: `phase "join master-3 (rescue image, then its OS)": JOIN-OK not seen in 10m0s`},
	}}
	md := r.markdown()
	for _, want := range []string{
		"| write the keys | 11.0 | 11.0 |",
		"| write the keys after the backup (to be lost) | 13.0 | 13.0 |",
		"| join master-3 (rescue image, then its OS) | 17.0 | **failed** |",
		"| join master-4 (rescue image, then its OS) | 18.0 | not run |",
		"| **quorum lost → full membership** (loss, restore, the survivor's OS, both joins) | **150.0** | not reached |",
		"| keys | restore the survivor | join master-3 | join master-4 | quorum lost → full membership | whole drill | result |",
		"| 10000 | 15s | 17s | 18s | 2m30s | 4m50s | passed |",
		"| 100000 | 15s | **failed** | not run | not reached | 19m50s (failed) | failed in phase \"join master-3 (rescue image, then its OS)\" |",
		"JOIN-OK not seen",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
	if got := r.targetRow(); got != "| drill quorum lost → full membership ≤ 3 min under TCG at 10k keys | 2m30s (whole drill 4m50s) | true |\n" {
		t.Errorf("%q", got)
	}
	small := &drillResult{runs: []drillRun{{keys: 2000, report: &drill.Report{Accel: "tcg", Recovery: 60, Total: 90}}}}
	if got := small.targetRow(); !strings.Contains(got, "not measured (the drill ran at 2000 keys)") {
		t.Errorf("%q", got)
	}
}

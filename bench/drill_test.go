package main

import (
	"errors"
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

// drillPhases are the drill's phases as it reports them, the first n, at
// keys keys, each taking 10 s plus its index.
func drillPhases(keys, n int) []drill.Phase {
	all := []drill.Phase{{ID: drill.PhaseBoot, Name: "boot 3 masters, form the TLS cluster"}, {ID: drill.PhaseWriteKeys, Name: "write the keys"},
		{ID: drill.PhaseBackup, Name: "etcd-rescue backup onto the backup volume"}, {ID: drill.PhaseWriteLost, Name: "write the keys after the backup (to be lost)"},
		{ID: drill.PhaseLoseQuorum, Name: "lose quorum (kill 2 masters, reset the survivor)"}, {ID: drill.PhaseRestore, Name: "restore the survivor (rescue image)"},
		{ID: drill.PhaseSurvivorOS, Name: "survivor boots its OS: one-member cluster"}, {ID: drill.PhaseJoin1, Name: "join master-3 (rescue image, then its OS)"},
		{ID: drill.PhaseJoin2, Name: "join master-4 (rescue image, then its OS)"}, {ID: drill.PhaseVerify, Name: "verify"}}
	var ps []drill.Phase
	for i, p := range all[:n] {
		p.Seconds = float64(10 + i)
		ps = append(ps, p)
	}
	return ps
}

func TestDrillMarkdown(t *testing.T) {
	r := &drillResult{runs: []drillRun{
		{keys: 10000, wall: 5 * time.Minute, report: &drill.Report{Accel: "tcg", Keys: 10000, Phases: drillPhases(10000, 10), Recovery: 150, Total: 290}},
		{keys: 100000, wall: 20 * time.Minute, report: &drill.Report{Accel: "tcg", Keys: 100000, Phases: drillPhases(100000, 7), Total: 1190, FailedPhase: drill.PhaseJoin1},
			failedPhase: drill.PhaseJoin1, err: `phase "join-1" (join master-3 (rescue image, then its OS)): JOIN-OK not seen in 10m0s`},
	}}
	md := r.markdown()
	for _, want := range []string{
		"| write the keys (`write-keys`) | 11.0 | 11.0 |",
		"| write the keys after the backup (to be lost) (`write-lost-keys`) | 13.0 | 13.0 |",
		"| join master-3 (rescue image, then its OS) (`join-1`) | 17.0 | **failed** |",
		"| join master-4 (rescue image, then its OS) (`join-2`) | 18.0 | not run |",
		"| **quorum lost → full membership** (loss, restore, the survivor's OS, both joins) | **150.0** | not reached |",
		"| keys | restore the survivor | join master-3 | join master-4 | quorum lost → full membership | whole drill | result |",
		"| 10000 | 15s | 17s | 18s | 2m30s | 4m50s | passed |",
		"| 100000 | 15s | **failed** | not run | not reached | 19m50s (failed) | failed in phase \"join-1\" |",
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

// TestDrillMarkdownRenamedPhase: runs whose drills titled a phase
// differently still share its row and its column in the short table,
// because both key on the phase's ID.
func TestDrillMarkdownRenamedPhase(t *testing.T) {
	older, newer := drillPhases(10000, 10), drillPhases(100000, 10)
	older[5].Name = "restore the survivor from the backup volume"
	older[7].Name = "join master-3.drill.lab.example"
	r := &drillResult{runs: []drillRun{
		{keys: 10000, report: &drill.Report{Accel: "tcg", Phases: older, Recovery: 150, Total: 290}},
		{keys: 100000, report: &drill.Report{Accel: "tcg", Phases: newer, Recovery: 160, Total: 300}},
	}}
	md := r.markdown()
	for _, want := range []string{
		"| restore the survivor (rescue image) (`restore`) | 15.0 | 15.0 |",
		"| join master-3 (rescue image, then its OS) (`join-1`) | 17.0 | 17.0 |",
		"| keys | restore the survivor | join master-3 | join master-4 |",
		"| 10000 | 15s | 17s | 18s |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
	if strings.Contains(md, "not run") || strings.Contains(md, "from the backup volume") {
		t.Errorf("a renamed phase got a row of its own:\n%s", md)
	}
}

// TestPhaseLine reads the drill's progress lines by phase ID.
func TestPhaseLine(t *testing.T) {
	m := phaseLine.FindStringSubmatch("=== phase join-1: join master-3 (rescue image, then its OS)")
	if m == nil || m[1] != "join-1" || m[2] != "" {
		t.Fatalf("start line: %q", m)
	}
	m = phaseLine.FindStringSubmatch("=== phase join-1: done in 17.9s")
	if m == nil || m[1] != "join-1" || m[2] != "done in 17.9s" {
		t.Fatalf("end line: %q", m)
	}
}

// TestSpliceDrill: a run of the drill part alone replaces the drill's
// section and its target row, and nothing else.
func TestSpliceDrill(t *testing.T) {
	r := &drillResult{runs: []drillRun{{keys: 10000, wall: time.Minute, report: &drill.Report{Accel: "tcg", Keys: 10000, Phases: drillPhases(10000, 10), Recovery: 40, Total: 60}}}}
	doc := "# Benchmarks\n\n## Rescue image\n\nimage\n\n## Drill: old\n\nold phases\n\n## Targets\n\n| target | measured | met |\n|---|---|---|\n" +
		"| restore ≤ 0.7× | 0.42 | true |\n| drill quorum lost → full membership ≤ 3 min under TCG at 10k keys | 43.1s (whole drill 1m5.4s) | true |\n\nnote\n"
	got := spliceDrill(doc, r)
	for _, want := range []string{"## Rescue image\n\nimage\n", r.markdown(), "| restore ≤ 0.7× | 0.42 | true |\n", r.targetRow(), "\nnote\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	for _, gone := range []string{"old phases", "43.1s"} {
		if strings.Contains(got, gone) {
			t.Errorf("%q is still in\n%s", gone, got)
		}
	}
}

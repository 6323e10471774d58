package main

import "testing"

func TestStepTimes(t *testing.T) {
	m := stepTimes("step 1/6 verify-backup: started: x\nstep 1/6 verify-backup: done (5ms)\nstep 4/6 restore-snapshot: done (1.234s)\n    moved\n")
	if m["verify-backup"].Milliseconds() != 5 || m["restore-snapshot"].Milliseconds() != 1234 {
		t.Fatal(m)
	}
}

func TestParseStatus(t *testing.T) {
	m := parseStatus("Name:\tetcdutl\nVmPeak:\t 9000 kB\nVmHWM:\t 8624128 kB\nVmRSS:\t 8000000 kB\nRssAnon:\t   45120 kB\nRssFile:\t 7954880 kB\n")
	if m.vmHWM != 8624128<<10 || m.rssAnon != 45120<<10 {
		t.Fatalf("%+v", m)
	}
	if m := parseStatus("Name:\tzombie\nState:\tZ (zombie)\n"); m != (memStatus{}) {
		t.Fatalf("zombie: %+v", m)
	}
}

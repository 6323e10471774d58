package main

import "testing"

func TestStepTimes(t *testing.T) {
	m := stepTimes("step 1/6 verify-backup: started: x\nstep 1/6 verify-backup: done (5ms)\nstep 4/6 restore-snapshot: done (1.234s)\n    moved\n")
	if m["verify-backup"].Milliseconds() != 5 || m["restore-snapshot"].Milliseconds() != 1234 {
		t.Fatal(m)
	}
}

package main

import (
	"os"
	"syscall"
)

// crashAfterStepEnv names a step after which the process kills itself with
// SIGKILL: a fault injection for drills and tests that prove a run resumes
// after a crash or power loss at every step boundary.
const crashAfterStepEnv = "ETCD_RESCUE_CRASH_AFTER_STEP"

func crashAfterStep() func(string) {
	target := os.Getenv(crashAfterStepEnv)
	if target == "" {
		return nil
	}
	return func(step string) {
		if step == target {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// Command etcd-rescue restores etcd quorum on a Kubernetes or OpenShift
// control plane that lost the majority of its masters. The same binary runs
// as the init-time program of the rescue image and as plain subcommands on a
// workstation or a live master.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// EnvCPUProfile names a file that receives a CPU profile of the whole run
// (the benchmarks use it to say where a restore's time goes).
const EnvCPUProfile = "ETCD_RESCUE_CPUPROFILE"

func main() {
	stopProfile := startProfile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	stopProfile()
	if err != nil {
		var ue usageError
		if !errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "etcd-rescue:", err)
		}
		os.Exit(1)
	}
}

func startProfile() func() {
	path := os.Getenv(EnvCPUProfile)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-rescue: %s: %v\n", EnvCPUProfile, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

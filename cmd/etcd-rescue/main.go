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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ue usageError
		if !errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "etcd-rescue:", err)
		}
		os.Exit(1)
	}
}

// Command etcd-rescue-lab is the QEMU lab that rehearses a recovery with
// the real rescue image: `drill` runs the whole loss and recovery on lab
// masters, and `lab-kubelet` is the init of the lab master OS those masters
// boot. It is kept apart from etcd-rescue so the product binary, the one
// the rescue image carries, links none of the lab or its test fixtures.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd-rescue-lab:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "etcd-rescue-lab",
		Short: "The QEMU lab that rehearses an etcd quorum recovery with the rescue image",
		Long: `etcd-rescue-lab rehearses a recovery on QEMU virtual machines with the real
rescue image built by 'etcd-rescue build-image'. It is a test lab, not part
of the recovery: the rescue image carries only etcd-rescue.`,
		Version:      version.Version,
		SilenceUsage: true,
		// main prints the error once.
		SilenceErrors: true,
	}
	root.AddCommand(newDrillCmd(), newLabKubeletCmd())
	return root
}

package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/internal/version"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
)

// newBootCmd is the rescue image's uinit: u-root's init runs
// `etcd-rescue boot`. It ends the machine itself; it returns (and init
// starts a shell) only on failure with etcd-rescue.shell=1.
func newBootCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "boot",
		Short:  "Run as the rescue image's init-time program",
		Hidden: true,
		Args:   cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return boot.Linux(os.Stdout, version.Version).Run(c.Context())
		},
	}
}

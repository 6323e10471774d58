package main

import (
	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/undo"
)

func newUndoCmd() *cobra.Command {
	var o undo.Options
	c := &cobra.Command{
		Use:   "undo [--root /] [--run RUN] [--dry-run]",
		Short: "Put back what a restore replaced, keeping the restored state aside",
		Long: `undo puts back the data dir, manifest, certificates and static pod resources
that a restore run kept aside, and moves the restored state aside in turn,
into <root>/var/lib/etcd-rescue/backup/<undo run>/: nothing is deleted, and
"etcd-rescue undo --run <undo run>" undoes the undo. Without --run it undoes
the latest restore run. It refuses while etcd runs on the data dir, resumes
after a crash when run again, and with --dry-run lists every move and
changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Out = c.OutOrStdout()
			o.AfterStep = crashAfterStep()
			return undo.Run(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Root, "root", "/", "the master's root filesystem")
	f.StringVar(&o.Run, "run", "", "the run to undo: a restore run, or an undo run (default: the latest restore run)")
	f.BoolVar(&o.DryRun, "dry-run", false, "list every move and change nothing")
	return c
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

// latestRun is what a bare `restore --undo` passes: the latest restore.
const latestRun = "latest"

// addUndoFlag gives restore its --undo [RUN] alias of `etcd-rescue undo`.
func addUndoFlag(f *pflag.FlagSet, run *string) {
	f.StringVar(run, "undo", "", "undo a restore instead: put back what run RUN kept aside (default: the latest restore); the same as `etcd-rescue undo --run RUN`")
	f.Lookup("undo").NoOptDefVal = latestRun
}

// restoreUndo runs `restore --undo [RUN]` (with RUN given as --undo=RUN or
// as the argument after a bare --undo) as `undo --run RUN`.
func restoreUndo(c *cobra.Command, root string, dryRun bool, flag string, args []string) error {
	if flag == "" {
		return fmt.Errorf("restore takes no arguments (got %q); to undo a restore run, pass --undo [RUN]", args[0])
	}
	run := flag
	if len(args) > 0 {
		if flag != latestRun {
			return fmt.Errorf("--undo=%s and the argument %q both name a run: give one", flag, args[0])
		}
		run = args[0]
	}
	if run == latestRun {
		run = ""
	}
	return undo.Run(c.Context(), undo.Options{Root: root, Run: run, DryRun: dryRun, Out: c.OutOrStdout(), AfterStep: crashAfterStep()})
}

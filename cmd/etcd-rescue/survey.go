package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

func newSurveyCmd() *cobra.Command {
	var (
		o        survey.Options
		root     string
		profName string
		asJSON   bool
	)
	c := &cobra.Command{
		Use:   "survey [--json] [--data-dir DIR ...] [--backup PATH ...] [--root ROOT [--profile P]]",
		Short: "Rank the survivors' data dirs and the backups by freshness, offline",
		Long: `survey reads each survivor's etcd data dir (its WAL included) and each backup
offline and read-only, ranks them by how much of the cluster's history they
keep, and says for each how many raft entries and revisions a restore from it
would lose against the freshest, which one the restore should use, and which
ones are damaged or belong to another cluster. etcd must be stopped on the
data dirs. What it reads is printed on stderr; the table (or --json) on stdout.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if root != "" {
				dir, err := rootDataDir(c, root, profName)
				if err != nil {
					return err
				}
				o.DataDirs = append(o.DataDirs, dir)
			}
			o.Log = c.ErrOrStderr()
			o.Progress = progress.Options{Mode: progress.ModeFor(o.Log, asJSON)}
			r, err := survey.Run(o)
			if err != nil {
				return err
			}
			if asJSON {
				return r.WriteJSON(c.OutOrStdout())
			}
			r.WriteTable(c.OutOrStdout())
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&o.DataDirs, "data-dir", nil, "a survivor's etcd data dir (repeat for several)")
	f.StringArrayVar(&o.Backups, "backup", nil, "a backup: snapshot file, backup file or folder (its newest backup); repeat for several")
	f.StringVar(&root, "root", "", "a master's root: survey the data dir its profile names")
	f.StringVar(&profName, "profile", "", "master layout with --root: openshift-4.3 or kubeadm (default: detect)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

// rootDataDir is the data dir etcd uses on the master's root: the one its
// manifest names, resolved in the root as the master sees it.
func rootDataDir(c *cobra.Command, root, profName string) (string, error) {
	var prof *profile.Profile
	if profName != "" {
		var err error
		if prof, err = profile.Get(profName); err != nil {
			return "", err
		}
	}
	dir, rel, why, err := survey.MasterDataDir(root, prof, "")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(c.ErrOrStderr(), "data dir: /%s (%s)\n", rel, why)
	return dir, nil
}

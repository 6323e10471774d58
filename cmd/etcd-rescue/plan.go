package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcdversion"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

func newPlanCmd() *cobra.Command {
	var validate bool
	c := &cobra.Command{
		Use:   "plan --validate FILE",
		Short: "Check a recovery plan and explain it",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			p, err := plan.Load(args[0])
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "plan %s: version %d, cluster %s", args[0], p.Version, p.Cluster.Name)
			if p.Cluster.Domain != "" {
				fmt.Fprintf(w, " (%s)", p.Cluster.Domain)
			}
			fmt.Fprintln(w)
			prof := p.Profile
			if prof == "" {
				prof = "detected from each master's root"
			}
			fmt.Fprintf(w, "  profile: %s\n", prof)
			restoreFlags := ""
			if p.EtcdVersion != "" {
				fmt.Fprintf(w, "  etcd: %s (restores are tested for %s)\n", p.EtcdVersion, etcdversion.Range())
				restoreFlags = " --etcd-version " + p.EtcdVersion
			} else {
				fmt.Fprintf(w, "  etcd: the version in the survivor's manifest (image tag) or old data dir; restores are tested for %s\n", etcdversion.Range())
			}
			for _, m := range p.Members {
				role := "joins"
				if m.Name == p.Survivor {
					role = "restored from the backup"
				}
				fmt.Fprintf(w, "  member %s: peer %s, %s\n", m.Name, m.PeerURL, role)
			}
			if p.Signer.Address != "" {
				fmt.Fprintf(w, "  signer: %s for at most %s\n", p.Signer.Address, p.Signer.TTL.Duration)
			}
			fmt.Fprintf(w, "  restore: etcd-rescue restore --name %s --initial-cluster %s%s\n", p.Survivor, plan.InitialCluster(p.SurvivorMember()), restoreFlags)
			if validate {
				fmt.Fprintln(w, "plan OK")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&validate, "validate", true, "validate the plan (always on; kept for the documented form)")
	return c
}

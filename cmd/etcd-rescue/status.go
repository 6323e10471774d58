package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/status"
)

func newStatusCmd() *cobra.Command {
	var (
		creds    members.Creds
		planPath string
		timeout  time.Duration
	)
	c := &cobra.Command{
		Use:   "status --endpoints https://IP:2379 --cacert CA --cert CERT --key KEY [--plan FILE]",
		Short: "Print the etcd member table and endpoint health; fail below the plan's membership",
		Long: `status prints the members like 'etcdctl member list -w table', with each
endpoint's health, leader, raft index and db size. With --plan it exits
non-zero until every planned member is a started, healthy voting member.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var p *plan.Plan
			if planPath != "" {
				var err error
				if p, err = plan.Load(planPath); err != nil {
					return err
				}
				if len(creds.Endpoints) == 0 {
					for _, m := range p.Members {
						if m.ClientURL != "" {
							creds.Endpoints = append(creds.Endpoints, m.ClientURL)
						}
					}
				}
			}
			if len(creds.Endpoints) == 0 {
				return errors.New("give --endpoints, or a --plan with client URLs")
			}
			cli, err := members.Dial(creds)
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(c.Context(), timeout)
			defer cancel()
			r, err := status.Collect(ctx, cli, 0)
			if err != nil {
				return err
			}
			r.WriteTable(c.OutOrStdout())
			return r.Check(p)
		},
	}
	f := c.Flags()
	f.StringSliceVar(&creds.Endpoints, "endpoints", nil, "etcd client URLs (default: the plan's client URLs)")
	f.StringVar(&creds.CACert, "cacert", "", "etcd CA certificate")
	f.StringVar(&creds.Cert, "cert", "", "etcd client certificate (a member's peer certificate works)")
	f.StringVar(&creds.Key, "key", "", "etcd client key")
	f.StringVar(&planPath, "plan", "", "recovery plan: fail while the cluster is below its membership")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "overall time limit")
	return c
}

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/apiclient"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/nodes"
)

func newWaitNodesCmd() *cobra.Command {
	var (
		k        kubeFlags
		role     string
		count    int
		timeout  time.Duration
		interval time.Duration
		dryRun   bool
	)
	c := &cobra.Command{
		Use:   "wait-nodes --kubeconfig K [--role master] [--count 3] [--nodes h1,h2,h3 | --plan FILE] [--timeout 30m]",
		Short: "Wait until the master nodes are Ready; print them like `oc get nodes`",
		Long: `wait-nodes polls the nodes labelled node-role.kubernetes.io/<role> until
--count of them are Ready (and every node of --nodes or the plan, when
given), printing a progress line whenever the state changes, then prints
the nodes' table. --dry-run prints the table once and does not wait.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var names []string
			if len(k.nodes) > 0 || k.planPath != "" {
				var err error
				if names, err = k.nodeNames(true); err != nil {
					return err
				}
			}
			if count == 0 {
				count = len(names)
			}
			if count <= 0 {
				return fmt.Errorf("--count must be at least 1 (the number of masters), or give --nodes or --plan")
			}
			if len(names) > count {
				return fmt.Errorf("--count %d is less than the %d nodes named", count, len(names))
			}
			cl, err := k.connect(c)
			if err != nil {
				return err
			}
			w := &nodes.Waiter{API: cl, Role: role, Count: count, Names: names, Interval: interval, Out: c.OutOrStdout()}
			ctx, cancel := context.WithTimeout(c.Context(), timeout)
			defer cancel()
			if dryRun {
				l, err := w.List(ctx)
				if err != nil {
					return err
				}
				nodes.WriteTable(c.OutOrStdout(), l, time.Now())
				return nil
			}
			l, err := w.Wait(ctx)
			nodes.WriteTable(c.OutOrStdout(), l, time.Now())
			return err
		},
	}
	f := c.Flags()
	k.register(f, "node names that must be Ready (default: the plan's hosts, when --plan is given)")
	f.StringVar(&role, "role", "master", "node role: nodes labelled node-role.kubernetes.io/<role>")
	f.IntVar(&count, "count", 0, "how many nodes of the role must be Ready (default: the number of --nodes or plan members)")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "overall time limit")
	f.DurationVar(&interval, "interval", 5*time.Second, "time between polls")
	f.BoolVar(&dryRun, "dry-run", false, "print the nodes once; do not wait")
	return c
}

func newWaitAPICmd() *cobra.Command {
	var (
		kubeconfig string
		timeout    time.Duration
		interval   time.Duration
		dryRun     bool
	)
	c := &cobra.Command{
		Use:   "wait-api --kubeconfig K [--timeout 20m]",
		Short: "Wait until the API server's /readyz is 200 and the kubeconfig's credentials work",
		Long: `wait-api polls the API server's /readyz (listing the failed checks) until it
answers 200, then makes an authenticated request until the kubeconfig's
credentials are accepted: after a recovery, OAuth tokens (oc login) can be
refused for minutes until the OAuth server pods restart. --dry-run checks
once and does not wait.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			k := kubeFlags{kubeconfig: kubeconfig}
			cl, err := k.connect(c)
			if err != nil {
				return err
			}
			if dryRun {
				// One check: a second poll would come after the deadline.
				timeout, interval = 15*time.Second, time.Hour
			}
			ctx, cancel := context.WithTimeout(c.Context(), timeout)
			defer cancel()
			return cl.WaitReady(ctx, apiclient.ReadyOptions{Interval: interval, Out: c.OutOrStdout()})
		},
	}
	f := c.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default $KUBECONFIG, then ~/.kube/config)")
	f.DurationVar(&timeout, "timeout", 20*time.Minute, "overall time limit")
	f.DurationVar(&interval, "interval", 5*time.Second, "time between polls")
	f.BoolVar(&dryRun, "dry-run", false, "check once; do not wait")
	return c
}

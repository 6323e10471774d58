package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/csr"
)

func newApproveCSRsCmd() *cobra.Command {
	var (
		k        kubeFlags
		watch    bool
		dryRun   bool
		timeout  time.Duration
		interval time.Duration
		output   string
		since    time.Duration
	)
	c := &cobra.Command{
		Use:   "approve-csrs --kubeconfig K (--nodes host1,host2 | --plan FILE) [--watch --timeout 30m] [--dry-run]",
		Short: "Approve exactly the new masters' kubelet client and serving CSRs",
		Long: `approve-csrs lists pending CSRs and approves only:
  - the kubelet client CSR of a planned node: signer
    kubernetes.io/kube-apiserver-client-kubelet, requested by
    ` + csr.BootstrapServiceAccount + `
    or system:bootstrap:<token id>, subject CN system:node:<node>, O system:nodes,
    no SANs, usages client auth (+ digital signature, key encipherment);
  - the kubelet serving CSR of a planned node: signer kubernetes.io/kubelet-serving,
    requested by system:node:<node> itself, same subject, SANs only that node's
    name and status addresses, usages server auth (+ digital signature,
    key encipherment).
Every other pending CSR is listed with each rule it breaks. With --watch it
keeps approving as CSRs arrive until every planned node has both (two CSRs
per new master). --dry-run shows what would be approved and why, and
approves nothing. Planned nodes are --nodes, or the plan's members' hosts
except the survivor's.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: use table or json", output)
			}
			if watch && dryRun {
				return fmt.Errorf("--watch approves CSRs as they arrive; with --dry-run run one pass without --watch")
			}
			if watch && output == "json" {
				return fmt.Errorf("--watch prints a table as CSRs arrive; drop --output json")
			}
			names, err := k.nodeNames(false)
			if err != nil {
				return err
			}
			cl, err := k.connect(c)
			if err != nil {
				return err
			}
			a := &csr.Approver{
				API:     cl,
				Planned: names,
				DryRun:  dryRun,
				Since:   time.Now().Add(-since),
			}
			ctx, cancel := context.WithTimeout(c.Context(), timeout)
			defer cancel()
			if watch {
				a.Out = c.OutOrStdout()
				return a.Watch(ctx, interval)
			}
			if output == "table" {
				a.Out = c.OutOrStdout()
			}
			res, err := a.Once(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				e := json.NewEncoder(c.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(res)
			}
			if len(res.Decisions) == 0 {
				c.Println("approve-csrs: no pending CSRs")
			}
			return nil
		},
	}
	f := c.Flags()
	k.register(f, "node names of the new masters whose CSRs may be approved (default: the plan's hosts but the survivor's)")
	f.BoolVar(&watch, "watch", false, "keep approving as CSRs arrive until every node has its client and serving CSR approved")
	f.BoolVar(&dryRun, "dry-run", false, "show what would be approved and why; approve nothing")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "overall time limit")
	f.DurationVar(&interval, "interval", 5*time.Second, "with --watch, time between passes")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	f.DurationVar(&since, "since", time.Hour, "with --watch, CSRs approved this recently (by anyone) count as a node's client or serving CSR")
	return c
}

package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/finish"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/signerpod"
)

func newFinishCmd() *cobra.Command {
	var (
		k        kubeFlags
		o        finish.Options
		lookup   bool
		resolver string
	)
	c := &cobra.Command{
		Use:   "finish --kubeconfig K --plan FILE [--dns-hook CMD] [--lb-hook CMD] [--dry-run]",
		Short: "The cluster side of a recovery, once etcd is whole: API, CSRs, nodes Ready, DNS and load balancer, signer removal",
		Long: `finish runs, as one list of steps, what the runbook does through the
Kubernetes API after etcd has its full membership again:
  wait-api       the API server's /readyz is 200 and the credentials work
  approve-csrs   the new masters' kubelet client and serving CSRs, only
                 those that pass every rule (see approve-csrs)
  wait-nodes     every master in the plan is Ready
  dns-lb         the etcd-N records and load-balancer pools from the nodes'
                 InternalIP, applied through --dns-hook/--lb-hook, or
                 printed to apply by hand (see dns-lb)
  remove-signer  the temporary signer pod is gone
Each step checks the cluster first: a re-run skips what is done. --dry-run
prints the plan (the pending CSRs with their verdicts, the node table, the
DNS and load-balancer change) and changes nothing. It ends with FINISH-OK,
FINISH-DRY-RUN or FINISH-FAILED: reason.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if len(k.nodes) > 0 {
				return errors.New("finish takes the masters from --plan; --nodes is for the single commands")
			}
			p, err := k.plan()
			if err != nil {
				return err
			}
			if p == nil {
				return errors.New("give the recovery plan with --plan: its members' hosts are the masters' node names")
			}
			cl, err := k.connect(c)
			if err != nil {
				return err
			}
			o.API, o.Plan, o.Out = cl, p, c.OutOrStdout()
			if lookup {
				o.Resolver = newResolver(resolver)
			}
			return finish.Run(c.Context(), o)
		},
	}
	f := c.Flags()
	k.register(f, "not used: finish takes the masters from --plan")
	_ = f.MarkHidden("nodes")
	f.StringVar(&o.DNSHook, "dns-hook", "", "command run with 'sh -c', the DNS change as JSON on stdin (see dns-lb)")
	f.StringVar(&o.LBHook, "lb-hook", "", "command run with 'sh -c', the load-balancer change as JSON on stdin")
	f.BoolVar(&lookup, "lookup", true, "look the DNS names up to show what changes")
	f.StringVar(&resolver, "resolver", "", "DNS server for --lookup, host:port (default: the system resolver)")
	f.StringVar(&o.Role, "role", "master", "the masters' node role (node-role.kubernetes.io/<role>)")
	f.DurationVar(&o.Interval, "interval", 5*time.Second, "time between polls")
	f.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "time limit of each waiting step")
	f.StringVar(&o.Signer.Namespace, "signer-namespace", signerpod.DefaultNamespace, "namespace of the signer pod")
	f.StringVar(&o.Signer.Name, "signer-name", signerpod.DefaultName, "name of the signer pod")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan; change nothing")
	return c
}

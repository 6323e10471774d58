package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcdversion"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/netconf"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

func newPlanCmd() *cobra.Command {
	var validate bool
	c := &cobra.Command{
		Use:   "plan [--validate] FILE",
		Short: "Explain a recovery plan; --validate checks it and lists every problem",
		Long: `plan explains what each machine of a recovery plan will do.

--validate checks the plan with the rules every command that loads it
applies (URLs, member names, addresses, the signer), lists every problem on
its own line, and exits non-zero when there is one; on a good plan it
explains it and ends with "plan OK".`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := args[0]
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("read plan: %w", err)
			}
			p, err := plan.Parse(b)
			if err != nil {
				if !validate {
					return fmt.Errorf("plan %s: %w (plan --validate lists every problem)", path, err)
				}
				problems := listProblems(c.OutOrStdout(), path, err)
				return fmt.Errorf("plan %s is not valid: %d problem(s) above; fix them and run plan --validate again", path, problems)
			}
			w := c.OutOrStdout()
			explainPlan(w, path, p)
			if validate {
				fmt.Fprintf(w, "plan OK: %d members, survivor %s; URLs, names, addresses and the signer checked\n", len(p.Members), p.Survivor)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&validate, "validate", false, "check the plan, list every problem and exit non-zero on any")
	return c
}

// listProblems prints each problem of a failed Parse on its own line and
// returns how many there are.
func listProblems(w io.Writer, path string, err error) int {
	problems := []error{err}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		problems = joined.Unwrap()
	}
	fmt.Fprintf(w, "plan %s:\n", path)
	for _, e := range problems {
		fmt.Fprintf(w, "  - %v\n", e)
	}
	return len(problems)
}

func explainPlan(w io.Writer, path string, p *plan.Plan) {
	fmt.Fprintf(w, "plan %s: version %d, cluster %s", path, p.Version, p.Cluster.Name)
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
	from := "the backup"
	if p.Source == plan.SourceSurvivorData {
		from = "its own data dir (source: survivor-data)"
		restoreFlags += " --from-data-dir"
	}
	for _, m := range p.Members {
		role := "joins"
		if m.Name == p.Survivor {
			role = "restored from " + from
		}
		fmt.Fprintf(w, "  member %s: peer %s, %s\n", m.Name, m.PeerURL, role)
		if n, err := netconf.FromPlan(m); err == nil && n != nil {
			fmt.Fprintf(w, "    network in the rescue image: %s\n", n.Describe())
		} else if m.IP != "" {
			fmt.Fprintf(w, "    network in the rescue image: %s as the master's own configuration has it, else on the first interface\n", m.IP)
		}
	}
	if p.Signer.Address != "" {
		fmt.Fprintf(w, "  signer: %s for at most %s\n", p.Signer.Address, p.Signer.TTL.Duration)
	}
	fmt.Fprintf(w, "  restore: etcd-rescue restore --name %s --initial-cluster %s%s\n", p.Survivor, plan.InitialCluster(p.SurvivorMember()), restoreFlags)
}

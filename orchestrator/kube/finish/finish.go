// Package finish runs the cluster side of a recovery, once etcd has its
// full membership again, as one list of steps: the API server answers and
// accepts the credentials, the new masters' kubelet CSRs are approved (only
// those that pass every rule), every master node is Ready, the etcd-N DNS
// records and load-balancer pools are applied through hooks (or printed),
// and the temporary signer is removed. Each step checks the cluster first,
// so a re-run after an interruption skips what is done, and a dry run
// prints the whole plan and changes nothing.
package finish

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/apiclient"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/csr"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/nodes"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/signerpod"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// Options configure a run.
type Options struct {
	API  *apiclient.Clients
	Plan *plan.Plan
	// DNSHook and LBHook are run with `sh -c`, their part of the change as
	// JSON on stdin (see dnslb.RunHook). Without them the changes are
	// printed for the operator to apply.
	DNSHook, LBHook string
	// Resolver looks the DNS names up to show what changes; nil skips it.
	Resolver dnslb.Resolver
	// Role is the masters' node role. Default "master".
	Role string
	// Interval between polls. Default 5s.
	Interval time.Duration
	// Timeout bounds each waiting step. Default 30m.
	Timeout time.Duration
	// Signer says which signer pod to remove.
	Signer signerpod.Options
	DryRun bool
	Out    io.Writer
}

// Run runs the steps and ends with FINISH-OK, FINISH-DRY-RUN or
// FINISH-FAILED: reason.
func Run(ctx context.Context, o Options) error {
	if o.Role == "" {
		o.Role = "master"
	}
	if o.Interval == 0 {
		o.Interval = 5 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	f := &finish{o: o}
	for _, m := range o.Plan.Members {
		if m.Host == "" {
			err := fmt.Errorf("plan member %s has no host: set members[].host to its node name", m.Name)
			fmt.Fprintf(o.Out, "FINISH-FAILED: %v\n", err)
			return err
		}
		f.hosts = append(f.hosts, m.Host)
		if m.Name != o.Plan.Survivor {
			f.newHosts = append(f.newHosts, m.Host)
		}
	}
	r := &steps.Runner{Operation: "finish", Out: o.Out, DryRun: o.DryRun}
	return r.Run(ctx, f.steps(), f.summary)
}

type finish struct {
	o        Options
	hosts    []string // every master's node name
	newHosts []string // the masters that joined
	change   *dnslb.Change
}

func (f *finish) steps() []steps.Step {
	return []steps.Step{f.waitAPI(), f.approveCSRs(), f.waitNodes(), f.dnsLB(), f.removeSigner()}
}

func (f *finish) summary() string {
	s := "masters Ready: " + strings.Join(f.hosts, ", ")
	if f.change != nil {
		s += fmt.Sprintf("; %d DNS records, %d load-balancer pools", len(f.change.DNS.Records), len(f.change.LB.Pools))
	}
	return s
}

// waiting bounds a waiting step by Timeout.
func (f *finish) waiting(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.o.Timeout)
}

func (f *finish) waitAPI() steps.Step {
	return steps.Step{
		Name: "wait-api",
		Describe: func() string {
			return "wait until the API server " + f.o.API.Config.Host + " is ready and accepts the credentials"
		},
		Check: func(ctx context.Context) (steps.State, error) {
			state, ok := f.o.API.Ready(ctx)
			fmt.Fprintf(steps.Indent(f.o.Out), "API server: %s\n", state)
			if ok {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error {
			ctx, cancel := f.waiting(ctx)
			defer cancel()
			return f.o.API.WaitReady(ctx, apiclient.ReadyOptions{Interval: f.o.Interval, Out: steps.Indent(f.o.Out)})
		},
	}
}

func (f *finish) approveCSRs() steps.Step {
	return steps.Step{
		Name: "approve-csrs",
		Describe: func() string {
			return "approve the kubelet client and serving CSRs of " + strings.Join(f.newHosts, ", ") + " as they arrive (only those that pass every rule)"
		},
		Check: func(ctx context.Context) (steps.State, error) {
			if len(f.newHosts) == 0 {
				return steps.NotNeeded, nil
			}
			// One pass that approves nothing: what is pending and why, and
			// whether every new master has both CSRs approved already.
			a := &csr.Approver{API: f.o.API, Planned: f.newHosts, DryRun: true, Out: io.Discard}
			if f.o.DryRun {
				a.Out = steps.Indent(f.o.Out)
			}
			if _, err := a.Once(ctx); err != nil {
				return steps.ToDo, err
			}
			if len(a.Missing()) == 0 {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error {
			ctx, cancel := f.waiting(ctx)
			defer cancel()
			a := &csr.Approver{API: f.o.API, Planned: f.newHosts, Out: steps.Indent(f.o.Out)}
			return a.Watch(ctx, f.o.Interval)
		},
	}
}

func (f *finish) waitNodes() steps.Step {
	w := &nodes.Waiter{API: f.o.API, Role: f.o.Role, Count: len(f.hosts), Names: f.hosts, Interval: f.o.Interval, Out: steps.Indent(f.o.Out)}
	return steps.Step{
		Name:     "wait-nodes",
		Describe: func() string { return "wait until the master nodes " + strings.Join(f.hosts, ", ") + " are Ready" },
		Check: func(ctx context.Context) (steps.State, error) {
			l, err := w.List(ctx)
			if err != nil {
				return steps.ToDo, err
			}
			nodes.WriteTable(steps.Indent(f.o.Out), l, time.Now())
			if w.Ready(l) {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error {
			ctx, cancel := f.waiting(ctx)
			defer cancel()
			_, err := w.Wait(ctx)
			return err
		},
	}
}

// dnsLB computes the change in its check, so a dry run shows it; without
// hooks the step only prints it (read-only), with hooks it applies it.
func (f *finish) dnsLB() steps.Step {
	hooks := f.o.DNSHook != "" || f.o.LBHook != ""
	return steps.Step{
		Name:     "dns-lb",
		ReadOnly: !hooks,
		Describe: func() string {
			if !hooks {
				return "print the etcd-N DNS records and load-balancer pools to set by hand (no --dns-hook or --lb-hook)"
			}
			return "apply the etcd-N DNS records and load-balancer pools through the hooks"
		},
		Check: func(ctx context.Context) (steps.State, error) {
			ch, err := f.computeChange(ctx)
			if err != nil {
				return steps.ToDo, err
			}
			f.change = ch
			ch.WriteTable(steps.Indent(f.o.Out))
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error {
			return f.change.Apply(ctx, f.o.DNSHook, f.o.LBHook, steps.Indent(f.o.Out))
		},
	}
}

func (f *finish) computeChange(ctx context.Context) (*dnslb.Change, error) {
	in, err := dnslb.FromPlan(dnslb.Input{}, f.o.Plan)
	if err != nil {
		return nil, err
	}
	return dnslb.FromCluster(ctx, f.o.API, in, f.o.Resolver)
}

func (f *finish) removeSigner() steps.Step {
	return steps.Step{
		Name: "remove-signer",
		Describe: func() string {
			return "delete the temporary signer pod if present and wait until no signer pod is left"
		},
		Check: func(context.Context) (steps.State, error) { return steps.ToDo, nil },
		Run: func(ctx context.Context) error {
			o := f.o.Signer
			o.Out = steps.Indent(f.o.Out)
			return signerpod.Remove(ctx, f.o.API, o)
		},
	}
}

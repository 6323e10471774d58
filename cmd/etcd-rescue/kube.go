package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/apiclient"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// kubeFlags are the flags every Kubernetes API subcommand shares.
type kubeFlags struct {
	kubeconfig string
	planPath   string
	nodes      []string
}

func (k *kubeFlags) register(f *pflag.FlagSet, nodesHelp string) {
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig of a cluster admin (default $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&k.planPath, "plan", "", "recovery plan: its members' hosts are the masters' node names")
	f.StringSliceVar(&k.nodes, "nodes", nil, nodesHelp)
}

// connect loads the kubeconfig and warns on stderr when the API server
// would be reached through a proxy.
func (k *kubeFlags) connect(c *cobra.Command) (*apiclient.Clients, error) {
	cl, err := apiclient.Connect(k.kubeconfig)
	if err != nil {
		return nil, err
	}
	w, err := apiclient.ProxyWarning(cl.Config)
	if err != nil {
		return nil, err
	}
	if w != "" {
		c.PrintErrln("etcd-rescue: warning:", w)
	}
	return cl, nil
}

// plan loads --plan, or returns nil when it is not given.
func (k *kubeFlags) plan() (*plan.Plan, error) {
	if k.planPath == "" {
		return nil, nil
	}
	return plan.Load(k.planPath)
}

// nodeNames returns --nodes, or the plan's member hosts (all of them, or
// all but the survivor's).
func (k *kubeFlags) nodeNames(withSurvivor bool) ([]string, error) {
	if len(k.nodes) > 0 {
		if k.planPath != "" {
			return nil, errors.New("give --nodes or --plan, not both")
		}
		return k.nodes, nil
	}
	p, err := k.plan()
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("give the masters' node names with --nodes host1,host2 or a --plan whose members have host set")
	}
	var names []string
	for _, m := range p.Members {
		if m.Host == "" {
			return nil, fmt.Errorf("plan member %s has no host: set members[].host to its node name, or give --nodes", m.Name)
		}
		if m.Name == p.Survivor && !withSurvivor {
			continue
		}
		names = append(names, m.Host)
	}
	return names, nil
}

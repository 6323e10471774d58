package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb/hostsfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb/rfc2136"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/signerpod"
)

func newDNSLBCmd() *cobra.Command {
	var (
		k        kubeFlags
		domain   string
		profile  string
		ttl      uint32
		output   string
		lookup   bool
		resolver string
		dnsHook  string
		lbHook   string
		dryRun   bool
		timeout  time.Duration
	)
	c := &cobra.Command{
		Use:   "dns-lb --kubeconfig K (--plan FILE | --domain D --nodes h0,h1,h2) [--dns-hook CMD] [--lb-hook CMD] [--dry-run]",
		Short: "Compute the etcd-N DNS records and API load-balancer targets from the nodes' InternalIP, and apply them through hooks",
		Long: `dns-lb reads the masters' InternalIP addresses from their nodes and computes
the DNS records (etcd-N.<domain> and, for openshift-4.3, the
_etcd-server-ssl._tcp SRV record) and the load-balancer pools (API 6443 and
machine config server 22623). It looks the names up to show what changes,
prints the plan (table or JSON), then runs --dns-hook and --lb-hook with
'sh -c', each with its part of the change as JSON on stdin. Hooks shipped:
  --dns-hook 'etcd-rescue dns-hook rfc2136 --server NS --zone ZONE [--tsig-key name:secret]'
  --dns-hook 'etcd-rescue dns-hook hosts-file --file /etc/hosts'
Members come from the plan (member host and dnsName, in plan order), or
from --nodes in etcd-N order. --dry-run prints the plan and runs no hook.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: use table or json", output)
			}
			in := dnslb.Input{Domain: domain, Profile: profile, TTL: ttl}
			p, err := k.plan()
			if err != nil {
				return err
			}
			if p != nil {
				if len(k.nodes) > 0 {
					return errors.New("give --nodes or --plan, not both")
				}
				if in, err = dnslb.FromPlan(in, p); err != nil {
					return err
				}
			} else {
				for _, n := range k.nodes {
					in.Members = append(in.Members, dnslb.Member{Node: n})
				}
			}
			cl, err := k.connect(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), timeout)
			defer cancel()
			var r dnslb.Resolver
			if lookup {
				r = newResolver(resolver)
			}
			ch, err := dnslb.FromCluster(ctx, cl, in, r)
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			if output == "json" {
				if err := ch.WriteJSON(out); err != nil {
					return err
				}
			} else {
				ch.WriteTable(out)
			}
			if dryRun {
				if dnsHook != "" || lbHook != "" {
					c.PrintErrln("dns-lb: --dry-run: no hook run")
				}
				return nil
			}
			if dnsHook == "" && lbHook == "" {
				c.PrintErrln("dns-lb: no --dns-hook or --lb-hook: apply the changes above yourself")
				return nil
			}
			return ch.Apply(ctx, dnsHook, lbHook, c.ErrOrStderr())
		},
	}
	f := c.Flags()
	k.register(f, "node names of every master in etcd-N order (etcd-0 first), when no --plan is given")
	f.StringVar(&domain, "domain", "", "cluster domain (default: the plan's cluster.domain)")
	f.StringVar(&profile, "profile", "", "openshift-4.3 (etcd-N and SRV records, API and machine-config pools) or kubeadm (API pool only); default the plan's, else openshift-4.3")
	f.Uint32Var(&ttl, "ttl", 60, "TTL of the records, seconds")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	f.BoolVar(&lookup, "lookup", true, "look the names up to show what changes")
	f.StringVar(&resolver, "resolver", "", "DNS server for --lookup, host:port (default: the system resolver)")
	f.StringVar(&dnsHook, "dns-hook", "", "command run with 'sh -c', the DNS change as JSON on stdin")
	f.StringVar(&lbHook, "lb-hook", "", "command run with 'sh -c', the load-balancer change as JSON on stdin")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan; run no hook")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "overall time limit")
	return c
}

// newResolver returns the system resolver, or one that asks server.
func newResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
}

func newDNSHookCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dns-hook (rfc2136 | hosts-file) [flags] < change.json",
		Short: "DNS hooks for dns-lb: RFC 2136 dynamic update, or a hosts file",
	}
	var (
		cfg     rfc2136.Config
		tsigKey string
	)
	rfc := &cobra.Command{
		Use:   "rfc2136 --server NS[:53] [--zone ZONE] [--tsig-key [alg:]name:secret] < change.json",
		Short: "Apply the DNS change read on stdin as one RFC 2136 dynamic update (as nsupdate does)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.Server == "" {
				return errors.New("--server is required: the zone's primary name server")
			}
			if tsigKey != "" {
				var err error
				if cfg.TSIGAlgorithm, cfg.TSIGName, cfg.TSIGSecret, err = rfc2136.ParseTSIG(tsigKey); err != nil {
					return err
				}
			}
			ch, err := readDNSChange(c.InOrStdin())
			if err != nil {
				return err
			}
			if err := rfc2136.Apply(c.Context(), cfg, ch); err != nil {
				return err
			}
			c.Printf("rfc2136: updated %d records at %s\n", len(ch.Records), cfg.Server)
			return nil
		},
	}
	rfc.Flags().StringVar(&cfg.Server, "server", "", "primary name server of the zone, host[:port]")
	rfc.Flags().StringVar(&cfg.Zone, "zone", "", "zone to update (default: the change's domain)")
	rfc.Flags().StringVar(&tsigKey, "tsig-key", "", "TSIG key as [algorithm:]name:base64-secret (algorithm default hmac-sha256)")
	rfc.Flags().BoolVar(&cfg.TCP, "tcp", false, "send the update over TCP")
	rfc.Flags().DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "time limit of the exchange")

	var file string
	hosts := &cobra.Command{
		Use:   "hosts-file --file /etc/hosts < change.json",
		Short: "Write the DNS change's A/AAAA records read on stdin into a managed block of a hosts file",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("--file is required")
			}
			ch, err := readDNSChange(c.InOrStdin())
			if err != nil {
				return err
			}
			if err := hostsfile.Apply(file, ch); err != nil {
				return err
			}
			c.Printf("hosts-file: wrote %s\n", file)
			return nil
		},
	}
	hosts.Flags().StringVar(&file, "file", "", "hosts file to update")
	c.AddCommand(rfc, hosts)
	return c
}

func readDNSChange(r io.Reader) (dnslb.DNSChange, error) {
	var ch dnslb.DNSChange
	d := json.NewDecoder(r)
	d.DisallowUnknownFields()
	if err := d.Decode(&ch); err != nil {
		return ch, fmt.Errorf("read the DNS change (JSON from etcd-rescue dns-lb) on stdin: %w", err)
	}
	if ch.Version != dnslb.Version || ch.Kind != "dns" {
		return ch, fmt.Errorf("stdin holds version %d kind %q; this hook reads version %d kind \"dns\" (give it to --dns-hook, not --lb-hook)", ch.Version, ch.Kind, dnslb.Version)
	}
	return ch, nil
}

func newRemoveSignerCmd() *cobra.Command {
	var (
		kubeconfig string
		o          signerpod.Options
	)
	c := &cobra.Command{
		Use:   "remove-signer --kubeconfig K [--force] [--dry-run]",
		Short: "Delete the temporary signer pod (openshift-config/etcd-signer) and verify it is gone",
		Long: `remove-signer deletes the signer pod the OpenShift 4.3 runbook creates
(openshift-config/etcd-signer) if it is present, and waits until it is gone
and until no mirror pod of etcd-rescue's static-pod signer
(openshift-etcd, app=etcd-rescue-signer) is left: that signer removes its
own manifest at full membership. Run it once every member is started and
voting (etcd-rescue status --plan).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			k := kubeFlags{kubeconfig: kubeconfig}
			cl, err := k.connect(c)
			if err != nil {
				return err
			}
			o.Out = c.OutOrStdout()
			return signerpod.Remove(c.Context(), cl, o)
		},
	}
	f := c.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of a cluster admin (default $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&o.Namespace, "namespace", signerpod.DefaultNamespace, "namespace of the signer pod")
	f.StringVar(&o.Name, "name", signerpod.DefaultName, "name of the signer pod")
	f.BoolVar(&o.Force, "force", false, "delete with grace period 0 (the pod's kubelet does not confirm)")
	f.BoolVar(&o.DryRun, "dry-run", false, "say what would be deleted; delete nothing")
	f.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long to wait for the pods to be gone")
	return c
}

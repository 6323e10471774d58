package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/join"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

func newJoinCmd() *cobra.Command {
	var (
		o                             join.Options
		planPath, tokenFile, profName string
	)
	c := &cobra.Command{
		Use:   "join --signer https://IP:9943 --token T --name NAME --peer-url https://HOST:2380 --endpoints https://IP:2379 [--root /] [--plan FILE] [--dry-run]",
		Short: "Make this new master a member of the restored etcd cluster",
		Long: `join keeps this master's old etcd state aside (never deleted), gets its etcd
certificates from the signer with its one-time token, has it added as a
learner, writes the etcd manifest (initial-cluster = current members + this
one, state existing; on OpenShift 4.3 the recover block of /etc/etcd/etcd.conf)
and waits until the member is started, voting and has the leader's HashKV.

Running it again changes nothing once done, and finishes a run that was
interrupted. It refuses while another member is added but not started, and
reports a stale member of an old master (--replace-stale removes it).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Out = c.OutOrStdout()
			// What a master's Ignition config left under the root is the default.
			exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
			if planPath == "" && exists(filepath.Join(o.Root, plan.DefaultPath)) {
				planPath = filepath.Join(o.Root, plan.DefaultPath)
			}
			if tokenFile == "" && o.Token == "" && exists(filepath.Join(o.Root, ignition.TokenPath)) {
				tokenFile = filepath.Join(o.Root, ignition.TokenPath)
			}
			// A CA pin or certificate the Ignition config carried.
			if o.CACert == "" && o.CAHash == "" {
				if b, err := os.ReadFile(filepath.Join(o.Root, ignition.CAPinPath)); err == nil {
					o.CAHash = strings.TrimSpace(string(b))
				} else if exists(filepath.Join(o.Root, ignition.CACertPath)) {
					o.CACert = filepath.Join(o.Root, ignition.CACertPath)
				}
			}
			if planPath != "" {
				p, err := plan.Load(planPath)
				if err != nil {
					return err
				}
				o.Plan = p
			}
			prof, err := profileFlag(profName)
			if err != nil {
				return err
			}
			o.Profile = prof
			if o.Token == "" && tokenFile != "" {
				t, err := signer.ReadToken(tokenFile, o.Member.Name)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				o.Token = strings.TrimSpace(t)
			}
			o.AfterStep = crashAfterStep()
			return join.Run(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Root, "root", "/", "this master's root filesystem")
	f.StringVar(&planPath, "plan", "", "recovery plan (gives URLs, names and the signer; default <root>"+plan.DefaultPath+" when present)")
	f.StringVar(&profName, "profile", "", "master layout: openshift-4.3 or kubeadm (default: the plan's, else detect)")
	f.StringVar(&o.Member.Name, "name", "", "this member's etcd name")
	f.StringVar(&o.Member.Name, "member", "", "same as --name")
	f.StringVar(&o.Member.PeerURL, "peer-url", "", "this member's peer URL (default: the plan's)")
	f.StringVar(&o.Member.ClientURL, "client-url", "", "this member's client URL (default: the plan's, else the peer host on 2379)")
	f.StringVar(&o.Member.DNSName, "dns-name", "", "this member's etcd-N DNS name, without a plan")
	f.StringVar(&o.Member.IP, "ip", "", "this master's IP, without a plan")
	f.StringSliceVar(&o.Endpoints, "endpoints", nil, "client URLs of the restored cluster (default: the survivor's from the plan)")
	f.StringVar(&o.Signer, "signer", "", "the signer's URL (default: the plan's)")
	f.StringVar(&o.Token, "token", "", "this master's one-time bootstrap token")
	f.StringVar(&tokenFile, "token-file", "", "file with the token (the token alone, or 'name token' lines; default <root>"+ignition.TokenPath+" when present)")
	f.StringVar(&o.CACert, "cacert", "", "etcd CA certificate to verify the signer (default: the profile's path under --root)")
	f.StringVar(&o.CAHash, "ca-hash", "", "pin of the etcd CA instead of --cacert: sha256:<hex>, as the signer prints it")
	f.BoolVar(&o.ReplaceStale, "replace-stale", false, "remove an old member holding this name or peer URL")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&o.NoWait, "no-wait", false, "stop after writing the etcd configuration (when etcd starts only later, e.g. before the kubelet)")
	f.DurationVar(&o.WaitTimeout, "wait-timeout", 0, "how long to wait for the member to be healthy (default 20m)")
	f.StringVar(&o.Image, "image", "", "etcd image, when this master has no etcd manifest to adapt")
	f.StringVar(&o.ListenIP, "listen-ip", "", "where a new manifest has etcd listen (default 0.0.0.0)")
	return c
}

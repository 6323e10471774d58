package main

import (
	"errors"
	"fmt"
	"log"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

func newSignerCmd() *cobra.Command {
	var (
		o              signer.RootOptions
		planPath       string
		profileName    string
		listen         string
		removeWhenDone bool
		printManifest  bool
		install        signer.InstallOptions
	)
	c := &cobra.Command{
		Use:   "signer [--root /] [--plan FILE] [--listen :9943] [--ttl 2h]",
		Short: "Run the temporary etcd certificate signer on the restored master",
		Long: `signer serves HTTPS (TLS 1.2 or newer) on the restored master and issues new
masters their etcd peer, server and metric certificates from the etcd CA in
the master's root, against a one-time bootstrap token per master and only
for the names and addresses the plan gives them. With etcd access (the
default) it also adds each new master as a learner, promotes learners that
caught up, and stops by itself at the plan's full membership or after --ttl.

Tokens are generated on the first start (or by 'signer tokens'): the
signer keeps only their hashes; the clear tokens go to a 0600 file.
--print-manifest shows the systemd unit or static pod the restore installs
to run the signer after the master reboots.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			out := c.OutOrStdout()
			if printManifest {
				files, err := signer.Manifest(install)
				if err != nil {
					return err
				}
				for _, f := range files {
					if f.Link != "" {
						fmt.Fprintf(out, "# /%s -> %s\n", f.Path, f.Link)
						continue
					}
					fmt.Fprintf(out, "# /%s\n%s\n", f.Path, f.Content)
				}
				return nil
			}
			p, err := plan.Load(resolvePlan(o.Root, planPath))
			if err != nil {
				return err
			}
			o.Plan = p
			if profileName != "" {
				if o.Profile, err = profile.Get(profileName); err != nil {
					return err
				}
			}
			o.Log = log.New(out, "", log.LstdFlags)
			st, err := signer.FromRoot(o)
			if err != nil {
				return err
			}
			if st.Etcd != nil {
				defer st.Etcd.Close()
			}
			if st.Tokens != nil {
				fmt.Fprintf(out, "signer: bootstrap tokens written to %s (mode 0600): give each new master only its own line\n", st.TokensFile)
			}
			fmt.Fprintf(out, "signer: etcd CA pin for join --ca-hash: %s\n", st.CAHash)
			reason, err := st.Server.ListenAndServe(c.Context(), listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "SIGNER-STOPPED: %s\n", reason)
			if removeWhenDone && (reason == signer.StopFullMembership || reason == signer.StopTTL) {
				removed, err := signer.Uninstall(o.Root)
				for _, r := range removed {
					fmt.Fprintf(out, "signer: removed %s\n", r)
				}
				return err
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.Root, "root", "/", "the restored master's root filesystem")
	f.StringVar(&planPath, "plan", "", "recovery plan (default <root>"+plan.DefaultPath+")")
	f.StringVar(&profileName, "profile", "", "master layout: openshift-4.3 or kubeadm (default: the plan's, else detect)")
	f.StringVar(&listen, "listen", signer.DefaultListen, "address to serve HTTPS on")
	f.DurationVar(&o.TTL, "ttl", 0, "stop after this long (default: the plan's signer.ttl, 2h)")
	f.StringVar(&o.CACert, "ca-cert", "", "etcd CA certificate (default: the profile's path under --root)")
	f.StringVar(&o.CAKey, "ca-key", "", "etcd CA key (default: the profile's path under --root)")
	f.StringSliceVar(&o.Endpoints, "endpoints", nil, "etcd client URLs (default: the survivor's client URL)")
	f.StringVar(&o.EtcdCert, "cert", "", "etcd client certificate (default: a short-lived one issued from the CA in memory)")
	f.StringVar(&o.EtcdKey, "key", "", "etcd client key")
	f.BoolVar(&o.NoEtcd, "no-etcd", false, "only issue certificates: no member add, promotion or stop at full membership")
	f.StringVar(&o.TokenStore, "token-store", "", "token hashes (default <root>/"+signer.StateDir+"/tokens.json)")
	f.StringVar(&o.TokensOut, "tokens-out", "", "where generated clear tokens go (default <root>/"+signer.StateDir+"/tokens.txt)")
	f.StringSliceVar(&o.ServingHosts, "serving-host", nil, "names and IPs of the serving certificate (default: the plan's signer address host, localhost, 127.0.0.1)")
	f.BoolVar(&removeWhenDone, "remove-when-done", false, "remove the installed unit or static pod from --root when stopping at full membership or TTL")
	f.BoolVar(&printManifest, "print-manifest", false, "print the systemd unit or static pod that runs the signer, and exit")
	f.StringVar(&install.Kind, "kind", signer.KindSystemd, "for --print-manifest: systemd or static-pod")
	f.StringVar(&install.Image, "image", "", "for --print-manifest --kind static-pod: the image to run it in")
	f.StringVar(&install.Binary, "binary", signer.DefaultBinary, "for --print-manifest: etcd-rescue's path on the master")
	c.AddCommand(newSignerTokensCmd())
	return c
}

func newSignerTokensCmd() *cobra.Command {
	var (
		planPath, store, out string
		ttl                  time.Duration
	)
	c := &cobra.Command{
		Use:   "tokens --plan FILE --store tokens.json --out tokens.txt [--ttl 24h]",
		Short: "Generate the new masters' one-time bootstrap tokens",
		Long: `tokens writes one token per new master: their hashes to --store (give it to
the signer with --token-store) and the clear tokens to --out, both mode 0600.
The Ignition generator takes a master's token from --out.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if planPath == "" || store == "" || out == "" {
				return errors.New("--plan, --store and --out are required")
			}
			p, err := plan.Load(planPath)
			if err != nil {
				return err
			}
			plain, err := signer.GenerateTokens(p, store, out, ttl)
			if err != nil {
				return err
			}
			var names []string
			for n := range plain {
				names = append(names, n)
			}
			sort.Strings(names)
			fmt.Fprintf(c.OutOrStdout(), "tokens for %s written to %s; hashes to %s; valid %s\n", strings.Join(names, ", "), out, store, ttl)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&planPath, "plan", "", "recovery plan")
	f.StringVar(&store, "store", "", "token hash store for the signer")
	f.StringVar(&out, "out", "", "clear tokens for the operator and the Ignition generator")
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "validity: tokens made before the restore must outlive it and the masters' joins")
	return c
}

// resolvePlan returns the plan path: the flag, else the default path under root.
func resolvePlan(root, flag string) string {
	if flag != "" {
		return flag
	}
	return filepath.Join(root, plan.DefaultPath)
}

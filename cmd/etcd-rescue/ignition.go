package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

func newIgnitionCmd() *cobra.Command {
	var (
		planPath, role, member, tokenFile, out, after, binSource, binHash string
		caFile, caPin                                                     string
		files                                                             []string
	)
	c := &cobra.Command{
		Use:   "ignition",
		Short: "Write the Ignition config that carries a role to a machine",
		Long: `ignition writes an Ignition (spec 3.4) config carrying the plan, the machine's
role and, for a new master, its one-time token. Boot the rescue image with it
(QEMU: -fw_cfg name=opt/com.coreos/config,file=OUT; or a partition labelled
config-2/ignition/etcd-rescue holding config.ign), or provision a fresh
CoreOS-family master with it: the join role adds a first-boot unit that runs
` + "`etcd-rescue join`" + `. The config is validated with Ignition's own parser.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if planPath == "" || role == "" || out == "" {
				return fmt.Errorf("--plan, --role and --out are required")
			}
			planBytes, err := os.ReadFile(planPath)
			if err != nil {
				return fmt.Errorf("read plan: %w", err)
			}
			// Only this master's token goes into its config, even when
			// the file is the signer's whole "name token" list.
			var token []byte
			if tokenFile != "" {
				t, err := signer.ReadToken(tokenFile, member)
				if err != nil {
					return err
				}
				token = []byte(t + "\n")
			}
			var ca []byte
			if caFile != "" {
				if ca, err = os.ReadFile(caFile); err != nil {
					return fmt.Errorf("read --etcd-ca: %w", err)
				}
			}
			extra := map[string][]byte{}
			for _, f := range files {
				dst, src, ok := strings.Cut(f, "=")
				if !ok {
					return fmt.Errorf("--file %s: give PATH=LOCAL-FILE, like /etc/etcd-rescue/luks.passphrase=./passphrase.txt", f)
				}
				if extra[dst], err = os.ReadFile(src); err != nil {
					return fmt.Errorf("--file %s: %w", f, err)
				}
			}
			raw, err := ignition.Build(ignition.Options{
				Files:        extra,
				CACert:       ca,
				CAPin:        caPin,
				Plan:         planBytes,
				Role:         ignition.Role{Role: role, Member: member, After: after},
				Token:        token,
				BinarySource: binSource,
				BinaryHash:   binHash,
			})
			if err != nil {
				return err
			}
			// The config may hold a token: keep it private.
			if err := os.WriteFile(out, raw, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote %s: role %s for cluster plan %s\n", out, role, planPath)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&planPath, "plan", "", "plan file")
	f.StringVar(&role, "role", "", "restore, join, verify or undo")
	f.StringVar(&member, "member", "", "this machine's member name (required for join; restore uses the survivor)")
	f.StringVar(&caFile, "etcd-ca", "", "etcd CA certificate for a new master whose root has none (join)")
	f.StringVar(&caPin, "etcd-ca-pin", "", "the etcd CA's pin, sha256:<hex> as the signer prints it, instead of --etcd-ca (join)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the new master's one-time signer token (required for join)")
	f.StringVar(&out, "out", "", "output file (.ign)")
	f.StringVar(&after, "after", "", "what the rescue image does after success: poweroff (default) or reboot")
	f.StringVar(&binSource, "binary-source", "", "Ignition source URL of the etcd-rescue binary for a CoreOS first boot")
	f.StringVar(&binHash, "binary-hash", "", "its hash, sha256-<hex>")
	f.StringArrayVar(&files, "file", nil, "PATH=LOCAL-FILE: carry LOCAL-FILE as PATH (under /etc/etcd-rescue), such as the LUKS passphrase file the plan's members[].luks names; repeatable")
	return c
}

package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
)

// etcdFlags are the etcd client flags shared by the commands that talk to etcd.
type etcdFlags struct {
	endpoints         []string
	cacert, cert, key string
	dialTimeout       time.Duration
}

func (f *etcdFlags) register(c *cobra.Command) {
	c.Flags().StringSliceVar(&f.endpoints, "endpoints", []string{"https://127.0.0.1:2379"}, "etcd client URLs")
	c.Flags().StringVar(&f.cacert, "cacert", "", "CA bundle that verifies the etcd servers")
	c.Flags().StringVar(&f.cert, "cert", "", "client certificate")
	c.Flags().StringVar(&f.key, "key", "", "client key")
	c.Flags().DurationVar(&f.dialTimeout, "dial-timeout", 10*time.Second, "how long to wait for a connection")
}

func (f *etcdFlags) config() (clientv3.Config, error) {
	cfg := clientv3.Config{Endpoints: f.endpoints, DialTimeout: f.dialTimeout, Logger: zap.NewNop()}
	if f.cacert != "" || f.cert != "" || f.key != "" {
		info := transport.TLSInfo{CertFile: f.cert, KeyFile: f.key, TrustedCAFile: f.cacert}
		tlsCfg, err := info.ClientConfig()
		if err != nil {
			return cfg, fmt.Errorf("etcd TLS: %w", err)
		}
		cfg.TLS = tlsCfg
	}
	return cfg, nil
}

func newBackupCmd() *cobra.Command {
	var (
		ef      etcdFlags
		root    string
		out     string
		profArg string
	)
	c := &cobra.Command{
		Use:   "backup --out DIR [--endpoints URLS --cacert F --cert F --key F] [--root /]",
		Short: "Take a backup: snapshot_<ts>.db and static_kuberesources_<ts>.tar.gz",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required: the folder that receives the backup")
			}
			cfg, err := ef.config()
			if err != nil {
				return err
			}
			var p *profile.Profile
			if profArg != "" {
				p, err = profile.Get(profArg)
			} else {
				p, err = profile.Detect(root)
			}
			if err != nil {
				return err
			}
			meter := newMeter(c, "download snapshot", 0)
			set, err := backup.Save(c.Context(), backup.SaveOptions{Client: cfg, Root: root, Profile: p, OutDir: out, Log: c.OutOrStdout(), Progress: meter.Func()})
			meter.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "backup written: %s and %s\n", set.Snapshot, set.Resources)
			return nil
		},
	}
	ef.register(c)
	c.Flags().StringVar(&root, "root", "/", "the master's root, where the static pod resources are read")
	c.Flags().StringVar(&out, "out", "", "folder that receives the backup files")
	c.Flags().StringVar(&profArg, "profile", "", "master layout: openshift-4.3 or kubeadm (default: detect)")
	return c
}

// newMeter shows progress on the command's stderr, so that its report on
// stdout stays clean: a bar on a terminal, a line every few seconds
// elsewhere.
func newMeter(c *cobra.Command, label string, total int64) *progress.Meter {
	w := c.ErrOrStderr()
	return progress.New(w, label, total, progress.Options{Mode: progress.ModeFor(w, false)})
}

func newVerifyBackupCmd() *cobra.Command {
	var (
		skipHash     bool
		timestamp    string
		snapshotOnly bool
	)
	c := &cobra.Command{
		Use:   "verify-backup DIR|FILE",
		Short: "Verify a backup: pair, sha256 trailer, bbolt integrity, safe tarball",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			set, err := backup.FindWith(args[0], backup.FindOptions{Timestamp: timestamp, AllowSnapshotOnly: snapshotOnly})
			if err != nil {
				return err
			}
			meter := newMeter(c, "verify "+filepath.Base(args[0]), 0)
			rep, err := backup.VerifyContext(c.Context(), set, backup.Options{SkipHashCheck: skipHash, Progress: meter.Func()})
			meter.Finish()
			if err != nil {
				return err
			}
			defer rep.Close() // the scratch copy of a single-file backup's snapshot
			rep.Print(c.OutOrStdout())
			fmt.Fprintln(c.OutOrStdout(), "backup OK")
			return nil
		},
	}
	c.Flags().BoolVar(&skipHash, "skip-hash-check", false, "accept a snapshot without its sha256 trailer (a db file copied from a data dir)")
	c.Flags().StringVar(&timestamp, "backup-timestamp", "", "verify the backup with this timestamp instead of the newest")
	c.Flags().BoolVar(&snapshotOnly, "snapshot-only", false, "accept a snapshot without static resources (kubeadm)")
	return c
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/live"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

func newRestoreCmd() *cobra.Command {
	var (
		o           restore.Options
		criEndpoint string
	)
	c := &cobra.Command{
		Use:   "restore --backup DIR --name NAME --initial-cluster NAME=https://HOST:2380 [--root /] [--dry-run]",
		Short: "Restore etcd quorum on the surviving master from a backup",
		Long: `restore turns the surviving master into a one-member etcd cluster with a new
cluster ID, from a verified backup. The old data dir, manifest and
certificates are kept under <root>/var/lib/etcd-rescue/backup/<run>/; nothing
is deleted. An interrupted restore resumes when it is run again with the same
flags. --dry-run prints the plan and changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Out = c.OutOrStdout()
			if o.Online {
				if o.Root != "/" {
					return fmt.Errorf("--online restores the running master: it takes --root / (got %s); a master disk mounted elsewhere is restored offline, without --online", o.Root)
				}
				cri, err := live.DialCRI(c.Context(), criEndpoint)
				if err != nil {
					return err
				}
				defer cri.Close()
				cri.Out = o.Out
				o.Host = &live.Host{Systemd: &live.Systemd{}, CRI: cri}
			}
			o.AfterStep = crashAfterStep()
			return restore.Run(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Root, "root", "/", "the master's root filesystem")
	f.StringVar(&o.BackupDir, "backup", "", "folder with the backup (or one backup file)")
	f.StringVar(&o.BackupTimestamp, "backup-timestamp", "", "restore the backup with this timestamp instead of the newest")
	f.BoolVar(&o.SnapshotOnly, "snapshot-only", false, "restore a snapshot without static resources (kubeadm)")
	f.StringVar(&o.Name, "name", "", "this member's etcd name")
	f.StringVar(&o.InitialCluster, "initial-cluster", "", "the new one-member cluster: NAME=https://HOST:2380")
	f.StringVar(&o.Profile, "profile", "", "master layout: openshift-4.3 or kubeadm (default: detect)")
	f.StringVar(&o.NodeName, "node-name", "", "the node's name (default: the member name without etcd-member-)")
	f.StringVar(&o.ClusterToken, "initial-cluster-token", "", "the new cluster's token (default etcd-rescue-<run id>)")
	f.Int64Var(&o.RevisionBump, "revision-bump", 0, "raise the revision by this much (default: computed from the old data dir)")
	f.StringVar(&o.EtcdVersion, "etcd-version", "", "the etcd version the master runs (default: the manifest's image tag, else the old data dir)")
	f.BoolVar(&o.SkipHashCheck, "skip-hash-check", false, "accept a snapshot without its sha256 trailer")
	f.BoolVar(&o.Force, "force", false, "restore even though old members still answer on their peer URLs")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&o.Online, "online", false, "on a live master: stop the static pods and kubelet first, start them after")
	f.StringVar(&criEndpoint, "cri-endpoint", "", "container runtime socket for --online (default: CRI-O's, then containerd's)")
	return c
}

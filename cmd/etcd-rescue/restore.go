package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/live"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

func newRestoreCmd() *cobra.Command {
	var (
		o                                           restore.Options
		criEndpoint, name, initialCluster, profName string
		undoRun                                     string
	)
	c := &cobra.Command{
		Use:   "restore (--backup DIR | --from-data-dir[=PATH]) --name NAME --initial-cluster NAME=https://HOST:2380 [--root /] [--dry-run]",
		Short: "Restore etcd quorum on the surviving master from a backup or its own data",
		Long: `restore turns the surviving master into a one-member etcd cluster with a new
cluster ID, from a verified backup, or with --from-data-dir from the
survivor's own data dir (default: the one the etcd manifest names): a copy
of it is brought up to date with every entry its WAL holds, so no write the
survivor received is lost. ` + "`etcd-rescue survey`" + ` says which source keeps more.
The old data dir, manifest and
certificates are kept under <root>/var/lib/etcd-rescue/backup/<run>/; nothing
is deleted. An interrupted restore resumes when it is run again with the same
flags. --dry-run prints the plan and changes nothing.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if c.Flags().Changed("from-data-dir") {
				o.Source = plan.SourceSurvivorData
				if o.FromDataDir == manifestDataDir {
					o.FromDataDir = ""
					// --from-data-dir PATH, with a space, leaves PATH as an argument.
					if len(args) == 1 && undoRun == "" {
						o.FromDataDir, args = args[0], nil
					}
				}
			}
			if undoRun != "" || len(args) > 0 {
				return restoreUndo(c, o.Root, o.DryRun, undoRun, args)
			}
			o.Out = c.OutOrStdout()
			o.Progress = progress.ModeFor(o.Out, false)
			prof, err := profileFlag(profName)
			if err == nil {
				o.Member, err = restoreMember(name, initialCluster, o.Member.Host)
			}
			if err != nil {
				fmt.Fprintf(o.Out, "RESTORE-FAILED: %v\n", err)
				return err
			}
			o.Profile = prof
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
	f.StringVar(&o.FromDataDir, "from-data-dir", "", "restore from the survivor's own data dir (default: the one the etcd manifest names) instead of a backup")
	f.Lookup("from-data-dir").NoOptDefVal = manifestDataDir
	f.StringVar(&o.BackupTimestamp, "backup-timestamp", "", "restore the backup with this timestamp instead of the newest")
	f.BoolVar(&o.SnapshotOnly, "snapshot-only", false, "restore a snapshot without static resources (kubeadm)")
	f.StringVar(&name, "name", "", "this member's etcd name")
	f.StringVar(&initialCluster, "initial-cluster", "", "the new one-member cluster: NAME=https://HOST:2380")
	f.StringVar(&profName, "profile", "", "master layout: openshift-4.3 or kubeadm (default: detect)")
	f.StringVar(&o.Member.Host, "node-name", "", "the node's name (default: the member name without etcd-member-)")
	f.StringVar(&o.ClusterToken, "initial-cluster-token", "", "the new cluster's token (default etcd-rescue-<run id>)")
	f.Int64Var(&o.RevisionBump, "revision-bump", 0, "raise the revision by this much (default: computed from the old data dir)")
	f.StringVar(&o.EtcdVersion, "etcd-version", "", "the etcd version the master runs (default: the manifest's image tag, else the old data dir)")
	f.BoolVar(&o.SkipHashCheck, "skip-hash-check", false, "accept a snapshot without its sha256 trailer")
	f.BoolVar(&o.Force, "force", false, "restore even though old members still answer on their peer URLs")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&o.Online, "online", false, "on a live master: stop the static pods and kubelet first, start them after")
	addUndoFlag(f, &undoRun)
	f.StringVar(&criEndpoint, "cri-endpoint", "", "container runtime socket for --online (default: CRI-O's, then containerd's)")
	return c
}

// manifestDataDir is the value of a bare --from-data-dir: the data dir the
// etcd manifest names.
const manifestDataDir = "manifest"

// restoreMember is the restored member as --name, --initial-cluster (which
// must name this member alone) and --node-name give it.
func restoreMember(name, initialCluster, nodeName string) (plan.Member, error) {
	if name == "" {
		return plan.Member{}, nil // restore says what is missing
	}
	members, err := plan.ParseInitialCluster(initialCluster)
	if err != nil {
		return plan.Member{}, fmt.Errorf("--initial-cluster: %w", err)
	}
	i := slices.IndexFunc(members, func(m plan.Member) bool { return m.Name == name })
	if i < 0 {
		return plan.Member{}, fmt.Errorf("--initial-cluster %q does not name this member %q: give %s=https://HOST:2380", initialCluster, name, name)
	}
	if len(members) != 1 {
		return plan.Member{}, fmt.Errorf("--initial-cluster names %d members: a restore starts a one-member cluster (%s=%s); the others join later with `etcd-rescue join`",
			len(members), name, members[i].PeerURL)
	}
	m := members[i]
	m.Host = nodeName
	if m.Host == "" {
		m.Host = strings.TrimPrefix(name, "etcd-member-")
	}
	return m, nil
}

// profileFlag is the layout --profile names; nil (detect it) when empty.
func profileFlag(name string) (*profile.Profile, error) {
	if name == "" {
		return nil, nil
	}
	return profile.Get(name)
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/internal/version"
)

// usageError is a flag problem cobra already printed with the usage text.
type usageError struct{ error }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "etcd-rescue",
		Short: "Restore etcd quorum after the loss of most masters",
		Long: `etcd-rescue restores etcd quorum on a Kubernetes or OpenShift control plane
that lost the majority of its masters: it verifies the backup, restores it on
the surviving master as a new one-member cluster, runs a temporary signer for
the new masters' etcd certificates and grows the cluster back to full
membership. Every step prints what it is about to do; --dry-run prints the
whole plan and changes nothing.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		c.PrintErrln("etcd-rescue:", err)
		c.PrintErrln(c.UsageString())
		return usageError{err}
	})
	root.AddCommand(
		newVersionCmd(),
		newPlanCmd(),
		newBackupCmd(),
		newVerifyBackupCmd(),
		newRestoreCmd(),
		newUndoCmd(),
		newBuildImageCmd(),
		newIgnitionCmd(),
		newBootCmd(),
		newSignerCmd(),
		newJoinCmd(),
		newStatusCmd(),
		newSurveyCmd(),
		newApproveCSRsCmd(),
		newWaitNodesCmd(),
		newWaitAPICmd(),
		newDNSLBCmd(),
		newDNSHookCmd(),
		newRemoveSignerCmd(),
		newFinishCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) {
			c.Println("etcd-rescue", version.Version)
		},
	}
}

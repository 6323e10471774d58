package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/image"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/drill"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/kubelet"
)

func newDrillCmd() *cobra.Command {
	var (
		o        drill.Options
		asJSON   bool
		verbose  bool
		jsonFile string
	)
	c := &cobra.Command{
		Use:   "drill [--keys N] [--json] [--keep] [--image DIR] [--kernel F --modules DIR] [--etcd BIN]",
		Short: "Rehearse the loss of etcd quorum and its recovery on QEMU virtual machines",
		Long: `drill rehearses the recovery in a lab of QEMU virtual machines on a network
namespace it creates (root needed; nothing leaves that namespace): three
OpenShift 4.3 masters form a TLS etcd cluster from their static pod
manifests, keys are written, a backup is taken, more keys are written, two
masters are killed, the survivor is restored with the rescue image (--image:
the pxe files of 'etcd-rescue build-image --format pxe') and two new masters
join through it. Then every member is checked (voting, equal HashKV, every
key from before the backup and none after, revision above the old one,
signer gone, an old master that comes back refused, old data kept) and the
report gives each phase's wall time.

The lab masters run the etcd binary given with --etcd (default: etcd in
PATH) under this etcd-rescue-lab binary as the lab kubelet.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			out := c.OutOrStdout()
			if o.Kernel == "" {
				k, m, err := image.CachedKernel(".")
				if err != nil {
					return err
				}
				o.Kernel, o.Modules = k, m
			}
			if o.Modules == "" {
				return errors.New("--modules is required with --kernel: the kernel's /lib/modules/<version> folder")
			}
			if o.Etcd == "" {
				p, err := exec.LookPath("etcd")
				if err != nil {
					return errors.New("no etcd binary: pass --etcd (a static etcd server binary, for example built with CGO_ENABLED=0 go build go.etcd.io/etcd/server/v3)")
				}
				o.Etcd = p
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			o.LabBinary = self
			o.Log = func(format string, a ...any) {
				s := fmt.Sprintf(format, a...)
				if verbose || strings.HasPrefix(s, "=== phase") {
					fmt.Fprintln(c.ErrOrStderr(), s)
				}
			}
			rep, err := drill.Run(c.Context(), o)
			if asJSON {
				out.Write(rep.JSON())
			} else {
				rep.Print(out)
			}
			if jsonFile != "" {
				if werr := os.WriteFile(jsonFile, rep.JSON(), 0o644); werr != nil {
					err = errors.Join(err, werr)
				}
			}
			if err != nil {
				return fmt.Errorf("DRILL-FAILED: %w", err)
			}
			fmt.Fprintln(c.ErrOrStderr(), "DRILL-OK")
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&o.Keys, "keys", 10000, "keys written before the backup")
	f.IntVar(&o.Lost, "lost", 0, "keys written after the backup, expected lost from the backup (default keys/20)")
	f.StringVar(&o.RescueDir, "image", filepath.Join("out", "image"), "folder with the rescue image's pxe files (vmlinuz, initrd.img, cmdline)")
	f.StringVar(&o.Kernel, "kernel", "", "kernel the lab masters boot (default: the one `make kernel` cached)")
	f.StringVar(&o.Modules, "modules", "", "the kernel's /lib/modules/<version> folder")
	f.StringVar(&o.Etcd, "etcd", "", "etcd server binary the lab masters run (default: etcd in PATH)")
	f.StringVar(&o.Accel, "accel", "tcg", "QEMU accelerator: tcg or kvm")
	f.StringVar(&o.Profile, "profile", "openshift-4.3", "the lab masters' layout: openshift-4.3 or kubeadm")
	f.StringVar(&o.Source, "source", "backup", "the plan's restore source: backup or survivor-data (the survivor's own data, no key lost)")
	f.BoolVar(&o.Keep, "keep", false, "keep the disks and configs (the report says where)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&jsonFile, "json-file", "", "also write the JSON report to this file")
	f.BoolVar(&verbose, "verbose", false, "print every VM console line")
	return c
}

// newLabKubeletCmd is the lab master OS's init (the kernel runs
// `/init lab-kubelet`, /init being this binary); it never returns.
func newLabKubeletCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "lab-kubelet",
		Short:  "Run as the drill's lab master OS init (the lab's kubelet)",
		Hidden: true,
		Args:   cobra.ArbitraryArgs,
		Run:    func(*cobra.Command, []string) { kubelet.Main() },
	}
}

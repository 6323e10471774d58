// Package drill rehearses the loss of etcd quorum on QEMU virtual machines
// and its recovery with the real rescue image, and proves nothing was lost.
//
// Three OpenShift 4.3 masters, or kubeadm masters with Options.Profile
// (each with its own ext4 disk, on a bridge in a network namespace the
// drill creates, with a DNS server for the etcd-N and SRV records) form a
// TLS cluster from their own static pod manifests;
// keys are written, a backup is taken, more keys are written (one master
// dies halfway), the other two are killed, the three data dirs and the
// backup are surveyed, the survivor is restored by the rescue image (restore role,
// from the backup or from its own data)
// and two new masters join through it (join role). Then every member is
// checked: voting, equal HashKV, every key from before the backup and none
// from after (from the survivor's own data: every key), the revision above the old one, the signer gone, an old
// master that comes back refused with a cluster ID mismatch, and the old
// data dir kept on the survivor's disk. The only stand-in is the lab
// kubelet (package lab/kubelet), which starts etcd and the recovery service
// from what is on each master's disk.
package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/masteros"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/netlab"
)

// Options configure a drill.
type Options struct {
	// Keys are written before the backup (default 10,000); Lost after it
	// (default Keys/20, at least 10), and are expected to be lost when the
	// backup is restored.
	Keys, Lost int
	// Kernel and Modules are the kernel the VMs boot and its
	// /lib/modules/<version> folder.
	Kernel, Modules string
	// RescueDir holds the rescue image's pxe files (vmlinuz, initrd.img,
	// cmdline), as `etcd-rescue build-image --format pxe` writes them.
	RescueDir string
	// LabBinary is the etcd-rescue-lab binary (static) the lab master OS
	// runs as its init, the lab kubelet.
	LabBinary string
	// Etcd is the etcd server binary the lab masters run.
	Etcd string
	// WorkDir holds the disks and configs; default a temporary folder,
	// removed at the end unless Keep.
	WorkDir string
	Keep    bool
	// Accel is kvm or tcg (default).
	Accel string
	// Profile is the masters' layout: openshift-4.3 (default: etcd-member
	// pods that find their peers through DNS SRV records) or kubeadm
	// (etcd pods with an initial cluster of IP peer URLs).
	Profile string
	// Source is the plan's restore source: plan.SourceBackup (default:
	// the keys written after the backup are lost) or
	// plan.SourceSurvivorData (the survivor's own data: none is lost).
	Source string
	// Log receives progress and every console line; default none.
	Log func(format string, a ...any)

	masterOS      string
	rescueCmdline string
}

// Report is the drill's result.
type Report struct {
	Accel    string  `json:"accel"`
	Profile  string  `json:"profile"`
	Keys     int     `json:"keys"`
	LostKeys int     `json:"lostKeys"`
	Phases   []Phase `json:"phases"`
	// FailedPhase is the ID of the phase that failed, if one did.
	FailedPhase string `json:"failedPhase,omitempty"`
	// Recovery is from the kill of the masters to three healthy members:
	// the phases marked recovery, set once all of them passed.
	Recovery float64 `json:"quorumLostToHealthySeconds"`
	Total    float64 `json:"totalSeconds"`
	// Sizes: the backup, the lab master OS initramfs.
	BackupMiB float64 `json:"backupMiB"`
	LabOSMiB  float64 `json:"labOSMiB"`
	// OldClusterID and NewClusterID prove the restore made a new cluster.
	OldClusterID string `json:"oldClusterID"`
	NewClusterID string `json:"newClusterID"`
	// MaxRevisionBeforeLoss and RevisionAfter prove the revision moved on.
	MaxRevisionBeforeLoss int64  `json:"maxRevisionBeforeLoss"`
	RevisionAfter         int64  `json:"revisionAfter"`
	HashKV                uint32 `json:"hashKV"`
	KeysChecked           int    `json:"keysChecked"`
	// Source is the restore source the plan named.
	Source string `json:"source"`
	// SurveyRanking is the survey's order of the sources; BackupWouldLose
	// and StaleWouldLose are the revisions the survey says restoring the
	// backup, or the stale master-1, would have lost against master-0.
	SurveyRanking   []string `json:"surveyRanking"`
	BackupWouldLose int64    `json:"backupWouldLoseRevisions"`
	StaleWouldLose  int64    `json:"staleWouldLoseRevisions"`
	// SurveyExact is false when those are lower bounds (writes in the
	// freshest WAL whose outcome only applying them tells).
	SurveyExact bool `json:"surveyExact"`
	// KeptDataDir is where the survivor's old data dir is on its disk.
	KeptDataDir string `json:"keptDataDir"`
	// WorkDir is kept when Options.Keep.
	WorkDir string `json:"workDir,omitempty"`
}

// Phase is one timed part of the drill: ID is its stable name (the
// Phase... constants), Name its title.
type Phase struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\n== etcd-rescue drill report (%s, %s masters, %d keys) ==\n", r.Accel, r.Profile, r.Keys)
	for _, p := range r.Phases {
		fmt.Fprintf(w, "  %-16s %-62s %6.1fs\n", p.ID, p.Name, p.Seconds)
	}
	if r.FailedPhase != "" {
		fmt.Fprintf(w, "  %-16s failed\n", r.FailedPhase)
	}
	fmt.Fprintf(w, "  %-79s %6.1fs\n", "quorum lost -> 3 healthy members", r.Recovery)
	fmt.Fprintf(w, "  %-79s %6.1fs\n", "total", r.Total)
	fmt.Fprintf(w, "  backup %.1f MiB, lab master OS %.1f MiB; cluster ID %s -> %s; revision %d before the loss, %d after\n",
		r.BackupMiB, r.LabOSMiB, r.OldClusterID, r.NewClusterID, r.MaxRevisionBeforeLoss, r.RevisionAfter)
	bound := "at least "
	if r.SurveyExact {
		bound = ""
	}
	fmt.Fprintf(w, "  survey: %s; the backup would lose %s%d revisions (%d keys were written after it), the stale master-1 %s%d\n",
		strings.Join(r.SurveyRanking, " > "), bound, r.BackupWouldLose, r.LostKeys, bound, r.StaleWouldLose)
	if r.Source == plan.SourceSurvivorData {
		fmt.Fprintf(w, "  restored from the survivor's own data: all %d keys (%d written after the backup) checked on every member; HashKV %d on all members\n",
			r.KeysChecked, r.LostKeys, r.HashKV)
	} else {
		fmt.Fprintf(w, "  %d keys written before the backup checked on every member; %d written after it lost, as expected; HashKV %d on all members\n",
			r.KeysChecked, r.LostKeys, r.HashKV)
	}
	if r.KeptDataDir != "" {
		fmt.Fprintf(w, "  the survivor's old data dir is kept on its disk in %s\n", r.KeptDataDir)
	}
}

// JSON returns the report as indented JSON.
func (r *Report) JSON() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}

// Run runs the drill. It returns the report of the phases that ran, and an
// error saying which phase failed and why.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if o.Keys == 0 {
		o.Keys = 10000
	}
	if o.Lost == 0 {
		o.Lost = max(o.Keys/20, 10)
	}
	if o.Accel == "" {
		o.Accel = "tcg"
	}
	if o.Profile == "" {
		o.Profile = profile.OpenShift43
	}
	if _, err := profile.Get(o.Profile); err != nil {
		return &Report{}, err
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	start := time.Now()
	rep = &Report{Accel: o.Accel, Profile: o.Profile, Keys: o.Keys, LostKeys: o.Lost, Source: o.Source}
	if o.Source == "" {
		rep.Source = plan.SourceBackup
	}
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			return rep, fmt.Errorf("%s not found: install e2fsprogs (make deps)", tool)
		}
	}
	for _, f := range []string{o.Kernel, o.LabBinary, o.Etcd, filepath.Join(o.RescueDir, "vmlinuz"), filepath.Join(o.RescueDir, "initrd.img")} {
		if _, err := os.Stat(f); err != nil {
			return rep, fmt.Errorf("drill input: %w", err)
		}
	}
	cmdline, err := os.ReadFile(filepath.Join(o.RescueDir, "cmdline"))
	if err != nil {
		return rep, fmt.Errorf("rescue image: %w (build it with `etcd-rescue build-image --format pxe`)", err)
	}
	o.rescueCmdline = strings.TrimSpace(string(cmdline))

	l := &lab{o: o, dir: o.WorkDir}
	if l.dir == "" {
		if l.dir, err = os.MkdirTemp("", "etcd-rescue-drill-"); err != nil {
			return rep, err
		}
	}
	defer func() {
		for _, v := range l.vms {
			v.Kill()
		}
		if l.dns != nil {
			l.dns.Close()
		}
		if l.n != nil {
			if cerr := l.n.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		if o.Keep {
			rep.WorkDir = l.dir
		} else if o.WorkDir == "" {
			os.RemoveAll(l.dir)
		}
	}()

	l.o.masterOS = filepath.Join(l.dir, "master-os.cpio")
	res, err := masteros.Build(masteros.Config{Init: o.LabBinary, Etcd: o.Etcd, ModulesDir: o.Modules}, l.o.masterOS)
	if err != nil {
		return rep, err
	}
	rep.LabOSMiB = float64(res.Size) / (1 << 20)
	if l.n, err = netlab.New(gateway, o.Log); err != nil {
		return rep, err
	}
	if l.dns, err = l.n.StartDNS(); err != nil {
		return rep, err
	}
	if err := l.newCA(); err != nil {
		return rep, err
	}
	r := newRun(l, rep)
	defer r.close()
	err = r.runPhases(ctx, r.phases())
	rep.Total = time.Since(start).Seconds()
	return rep, err
}

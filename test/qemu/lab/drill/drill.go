// Package drill rehearses the loss of etcd quorum on QEMU virtual machines
// and its recovery with the real rescue image, and proves nothing was lost.
//
// Three OpenShift 4.3 masters, or kubeadm masters with Options.Profile
// (each with its own ext4 disk, on a bridge in a network namespace the
// drill creates, with a DNS server for the etcd-N and SRV records) form a
// TLS cluster from their own static pod manifests;
// keys are written, a backup is taken, more keys are written, two masters
// are killed, the survivor is restored by the rescue image (restore role)
// and two new masters join through it (join role). Then every member is
// checked: voting, equal HashKV, every key from before the backup and none
// from after, the revision above the old one, the signer gone, an old
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
	"regexp"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/roles"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/masteros"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/netlab"
)

// Options configure a drill.
type Options struct {
	// Keys are written before the backup (default 10,000); Lost after it
	// (default Keys/20, at least 10), and are expected to be lost.
	Keys, Lost int
	// Kernel and Modules are the kernel the VMs boot and its
	// /lib/modules/<version> folder.
	Kernel, Modules string
	// RescueDir holds the rescue image's pxe files (vmlinuz, initrd.img,
	// cmdline), as `etcd-rescue build-image --format pxe` writes them.
	RescueDir string
	// Binary is the etcd-rescue binary the lab master OS runs as its init.
	Binary string
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
	// Recovery is from the kill of the masters to three healthy members.
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
	// KeptDataDir is where the survivor's old data dir is on its disk.
	KeptDataDir string `json:"keptDataDir"`
	// WorkDir is kept when Options.Keep.
	WorkDir string `json:"workDir,omitempty"`
}

// Phase is one timed part of the drill.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\n== etcd-rescue drill report (%s, %s masters, %d keys) ==\n", r.Accel, r.Profile, r.Keys)
	for _, p := range r.Phases {
		fmt.Fprintf(w, "  %-62s %6.1fs\n", p.Name, p.Seconds)
	}
	fmt.Fprintf(w, "  %-62s %6.1fs\n", "quorum lost -> 3 healthy members", r.Recovery)
	fmt.Fprintf(w, "  %-62s %6.1fs\n", "total", r.Total)
	fmt.Fprintf(w, "  backup %.1f MiB, lab master OS %.1f MiB; cluster ID %s -> %s; revision %d before the loss, %d after\n",
		r.BackupMiB, r.LabOSMiB, r.OldClusterID, r.NewClusterID, r.MaxRevisionBeforeLoss, r.RevisionAfter)
	fmt.Fprintf(w, "  %d keys written before the backup checked on every member; %d written after it lost, as expected; HashKV %d on all members\n",
		r.KeysChecked, r.LostKeys, r.HashKV)
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
	rep = &Report{Accel: o.Accel, Profile: o.Profile, Keys: o.Keys, LostKeys: o.Lost}
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			return rep, fmt.Errorf("%s not found: install e2fsprogs (make deps)", tool)
		}
	}
	for _, f := range []string{o.Kernel, o.Binary, o.Etcd, filepath.Join(o.RescueDir, "vmlinuz"), filepath.Join(o.RescueDir, "initrd.img")} {
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
	res, err := masteros.Build(masteros.Config{Init: o.Binary, Etcd: o.Etcd, ModulesDir: o.Modules}, l.o.masterOS)
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
	err = l.run(ctx, rep, start)
	rep.Total = time.Since(start).Seconds()
	return rep, err
}

func (l *lab) run(ctx context.Context, rep *Report, start time.Time) error {
	o := l.o
	phase := func(name string, f func() error) error {
		s := time.Now()
		o.Log("=== phase %s", name)
		if err := f(); err != nil {
			return fmt.Errorf("phase %q: %w", name, err)
		}
		d := time.Since(s)
		rep.Phases = append(rep.Phases, Phase{Name: name, Seconds: d.Seconds()})
		o.Log("=== phase %s: done in %s", name, d.Round(100*time.Millisecond))
		return nil
	}

	old := []*master{newMaster(o.Profile, 0, 0), newMaster(o.Profile, 1, 1), newMaster(o.Profile, 2, 2)}
	var initial []plan.Member
	for _, m := range old {
		initial = append(initial, m.planMember())
	}
	var etcdNames []string
	for _, m := range old {
		m.fx.InitialCluster = plan.InitialCluster(initial...) // what kubeadm wrote; OpenShift discovers it

		l.dns.SetA(m.fx.DNSName, m.fx.IP)
		etcdNames = append(etcdNames, m.fx.DNSName)
	}
	l.dns.SetEtcdSRV(domain, peerPort, etcdNames...)

	var cli *clientv3.Client
	var oldState clusterState
	if err := phase("boot 3 masters, form the TLS cluster", func() error {
		for _, m := range old {
			if err := l.writeDisk(m, true); err != nil {
				return err
			}
		}
		// All three boot at once; then wait for each.
		for _, m := range old {
			if err := l.startOS(m, fmt.Sprintf("master-%d", m.idx)); err != nil {
				return err
			}
		}
		for _, m := range old {
			if err := l.waitOS(m); err != nil {
				return err
			}
		}
		var err error
		if cli, err = l.client(old[0].clientURL(), old[1].clientURL(), old[2].clientURL()); err != nil {
			return err
		}
		oldState, err = l.waitMembers(cli, 3, 5*time.Minute)
		return err
	}); err != nil {
		return err
	}
	defer cli.Close()
	rep.OldClusterID = fmt.Sprintf("%x", oldState.ClusterID)

	if err := phase(fmt.Sprintf("write %d keys", o.Keys), func() error {
		_, err := putKeys(ctx, cli, 0, o.Keys)
		return err
	}); err != nil {
		return err
	}

	backupTree := filepath.Join(l.dir, "backup-volume")
	var backupDisk string
	if err := phase("etcd-rescue backup onto the backup volume", func() error {
		prof, err := profile.Get(o.Profile)
		if err != nil {
			return err
		}
		var log strings.Builder
		set, err := backup.Save(ctx, backup.SaveOptions{Client: l.clientConfig(old[0].clientURL()), Root: old[0].tree,
			Profile: prof, OutDir: filepath.Join(backupTree, "etcd"), Log: &log})
		o.Log("backup:\n%s", log.String())
		if err != nil {
			return err
		}
		o.Log("backup written: %s and %s", set.Snapshot, set.Resources)
		size, err := dirSize(backupTree)
		if err != nil {
			return err
		}
		rep.BackupMiB = float64(size) / (1 << 20)
		backupDisk, err = ext4Image(filepath.Join(l.dir, "backup.ext4"), backupTree, "backup", int(size>>20)*2+32)
		return err
	}); err != nil {
		return err
	}

	if err := phase(fmt.Sprintf("write %d keys after the backup (to be lost)", o.Lost), func() error {
		var err error
		rep.MaxRevisionBeforeLoss, err = putKeys(ctx, cli, o.Keys, o.Keys+o.Lost)
		return err
	}); err != nil {
		return err
	}
	cli.Close()

	// The loss: two masters are powered off hard; the survivor, without
	// quorum, is reset into the rescue image.
	lossStart := time.Now()
	if err := phase("lose quorum (kill 2 masters, reset the survivor)", func() error {
		for _, m := range old {
			m.vm.Kill()
		}
		return nil
	}); err != nil {
		return err
	}

	survivor := old[0]
	m3, m4 := newMaster(o.Profile, 3, 1), newMaster(o.Profile, 4, 2)
	pl := &plan.Plan{
		Version: plan.Version, Cluster: plan.Cluster{Name: cluster, Domain: domain}, Profile: o.Profile,
		Survivor: survivor.fx.MemberName,
		Members:  []plan.Member{survivor.planMember(), m3.planMember(), m4.planMember()},
		Signer:   plan.Signer{Address: fmt.Sprintf("https://%s:%d", survivor.fx.IP, 9943)},
	}
	planBytes, err := pl.Marshal()
	if err != nil {
		return err
	}
	if _, err := plan.Parse(planBytes); err != nil {
		return fmt.Errorf("drill plan: %w", err)
	}
	tokStore, tokFile := filepath.Join(l.dir, "tokens.json"), filepath.Join(l.dir, "tokens.txt")
	if _, err := signer.GenerateTokens(pl, tokStore, tokFile, 2*time.Hour); err != nil {
		return err
	}

	if err := phase("restore the survivor (rescue image)", func() error {
		cfg, err := ignition.Build(ignition.Options{Plan: planBytes, Role: ignition.Role{Role: ignition.RoleRestore, After: ignition.AfterReboot}})
		if err != nil {
			return err
		}
		store, err := os.ReadFile(tokStore)
		if err != nil {
			return err
		}
		if cfg, err = addIgnitionFile(cfg, roles.SignerTokensFile, store, 0o600); err != nil {
			return err
		}
		p := filepath.Join(l.dir, "restore.ign")
		if err := os.WriteFile(p, cfg, 0o600); err != nil {
			return err
		}
		v, err := l.rescue("restore", survivor.mac, p, survivor.disk, backupDisk)
		if err != nil {
			return err
		}
		if _, err := v.Expect("RESTORE-OK", 10*time.Minute); err != nil {
			return err
		}
		return v.Wait(2 * time.Minute)
	}); err != nil {
		return err
	}

	var cli0 *clientv3.Client
	if err := phase("survivor boots its OS: one-member cluster", func() error {
		if err := l.bootOS(survivor, "master-0-restored"); err != nil {
			return err
		}
		var err error
		if cli0, err = l.client(survivor.clientURL()); err != nil {
			return err
		}
		st, err := l.waitMembers(cli0, 1, 5*time.Minute)
		if err != nil {
			return err
		}
		rep.NewClusterID = fmt.Sprintf("%x", st.ClusterID)
		if st.ClusterID == oldState.ClusterID {
			return fmt.Errorf("the restored cluster kept the old cluster ID %x", st.ClusterID)
		}
		return nil
	}); err != nil {
		return err
	}
	defer cli0.Close()

	for i, nm := range []*master{m3, m4} {
		if err := phase(fmt.Sprintf("join %s (rescue image, then its OS)", nm.fx.NodeName), func() error {
			// The operator points etcd-N at the new master.
			l.dns.SetA(nm.fx.DNSName, nm.fx.IP)
			if err := l.writeDisk(nm, false); err != nil {
				return err
			}
			tok, err := signer.ReadToken(tokFile, nm.fx.MemberName)
			if err != nil {
				return err
			}
			cfg, err := ignition.Build(ignition.Options{Plan: planBytes, Token: []byte(tok),
				Role: ignition.Role{Role: ignition.RoleJoin, Member: nm.fx.MemberName, After: ignition.AfterReboot}})
			if err != nil {
				return err
			}
			p := filepath.Join(l.dir, fmt.Sprintf("join-%d.ign", nm.idx))
			if err := os.WriteFile(p, cfg, 0o600); err != nil {
				return err
			}
			v, err := l.rescue(fmt.Sprintf("join-%d", nm.idx), nm.mac, p, nm.disk)
			if err != nil {
				return err
			}
			if _, err := v.Expect("JOIN-OK", 10*time.Minute); err != nil {
				return err
			}
			if err := v.Wait(2 * time.Minute); err != nil {
				return err
			}
			if err := l.bootOS(nm, fmt.Sprintf("master-%d", nm.idx)); err != nil {
				return err
			}
			_, err = l.waitMembers(cli0, 2+i, 10*time.Minute)
			return err
		}); err != nil {
			return err
		}
	}
	rep.Recovery = time.Since(lossStart).Seconds()

	newMasters := []*master{survivor, m3, m4}
	all, err := l.client(survivor.clientURL(), m3.clientURL(), m4.clientURL())
	if err != nil {
		return err
	}
	defer all.Close()
	if err := phase("verify", func() error { return l.verify(ctx, rep, all, newMasters, survivor, pl) }); err != nil {
		return err
	}

	if err := phase("an old master comes back with its old data", func() error {
		// Old data is never reused: the old master's etcd is refused by
		// the new members and the new cluster does not notice.
		back := old[1]
		l.dns.SetA(back.fx.DNSName, back.fx.IP)
		defer l.dns.SetA(back.fx.DNSName, m3.fx.IP)
		if err := l.bootOS(back, "old-master-1"); err != nil {
			return err
		}
		if _, err := back.vm.Expect("cluster ID mismatch", 3*time.Minute); err != nil {
			return err
		}
		st, err := l.waitMembers(all, 3, time.Minute)
		if err != nil {
			return err
		}
		if fmt.Sprintf("%x", st.ClusterID) != rep.NewClusterID {
			return fmt.Errorf("cluster ID %x after the old master came back, was %s", st.ClusterID, rep.NewClusterID)
		}
		vctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		for _, m := range newMasters {
			h, err := waitHashKV(vctx, all, m.clientURL(), rep.RevisionAfter)
			if err != nil {
				return err
			}
			if h != rep.HashKV {
				return fmt.Errorf("%s: HashKV at revision %d is %d after the old master came back, was %d", m.fx.NodeName, rep.RevisionAfter, h, rep.HashKV)
			}
		}
		back.vm.Kill()
		return nil
	}); err != nil {
		return err
	}

	return phase("survivor's disk after power-off: old data kept, signer removed", func() error {
		for _, m := range newMasters {
			m.vm.Kill()
		}
		// The VM was powered off hard: replay the ext4 journal first, as
		// the next mount would (debugfs reads without it).
		if out, err := exec.Command("e2fsck", "-fy", survivor.disk).CombinedOutput(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
				return fmt.Errorf("e2fsck of the survivor's disk: %v: %s", err, out)
			}
		}
		runs, err := debugfsList(survivor.disk, "/var/lib/etcd-rescue/backup")
		if err != nil {
			return err
		}
		if len(runs) != 1 {
			return fmt.Errorf("restore runs kept on the survivor's disk: %v, want one", runs)
		}
		kept := "/var/lib/etcd-rescue/backup/" + runs[0] + "/var/lib/etcd"
		files, err := debugfsList(survivor.disk, kept+"/member/snap")
		if err != nil {
			return err
		}
		if !slices.Contains(files, "db") {
			return fmt.Errorf("the old data dir is not kept in %s: %v", kept, files)
		}
		for _, gone := range []string{signer.UnitPath, signer.UnitWantsPath} {
			if out, _ := exec.Command("debugfs", "-R", "stat /"+gone, survivor.disk).CombinedOutput(); !strings.Contains(string(out), "not found") {
				return fmt.Errorf("/%s is still on the survivor's disk", gone)
			}
		}
		rep.KeptDataDir = kept
		return nil
	})
}

// verify checks the recovered cluster: HashKV, keys, revision, signer.
func (l *lab) verify(ctx context.Context, rep *Report, all *clientv3.Client, newMasters []*master, survivor *master, pl *plan.Plan) error {
	if _, err := l.waitMembers(all, 3, 2*time.Minute); err != nil {
		return err
	}
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// A write through the new cluster, then HashKV at one revision.
	resp, err := all.Put(vctx, "/registry/drill/verified", time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return err
	}
	rev := resp.Header.Revision
	rep.RevisionAfter = rev
	if rev <= rep.MaxRevisionBeforeLoss {
		return fmt.Errorf("revision %d after the recovery is not above the old cluster's %d", rev, rep.MaxRevisionBeforeLoss)
	}
	var hashes []string
	for i, m := range newMasters {
		h, err := waitHashKV(vctx, all, m.clientURL(), rev)
		if err != nil {
			return err
		}
		hashes = append(hashes, fmt.Sprintf("%s=%d", m.fx.NodeName, h))
		if i == 0 {
			rep.HashKV = h
		} else if h != rep.HashKV {
			return fmt.Errorf("HashKV differs at revision %d: %s", rev, strings.Join(hashes, ", "))
		}
		one, err := l.client(m.clientURL())
		if err != nil {
			return err
		}
		err = checkKeys(vctx, one, rep.Keys)
		one.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", m.fx.NodeName, err)
		}
	}
	rep.KeysChecked = rep.Keys
	l.o.Log("HashKV at revision %d: %s", rev, strings.Join(hashes, ", "))
	// The recovery service stopped at full membership and removed itself.
	if _, err := survivor.vm.Expect("SIGNER-STOPPED", 2*time.Minute); err != nil {
		return err
	}
	if _, err := survivor.vm.ExpectRE(regexp.MustCompile(`signer: removed .*etcd-rescue-signer.service`), time.Minute); err != nil {
		return err
	}
	if c, err := l.n.Dial(vctx, "tcp", strings.TrimPrefix(pl.Signer.Address, "https://")); err == nil {
		c.Close()
		return fmt.Errorf("the signer still listens on %s", pl.Signer.Address)
	}
	return nil
}

package drill

import (
	"context"
	"fmt"
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
)

// The phases' IDs. The report, the progress lines and errors carry them,
// and bench keys its columns on them: a title may change, an ID stays.
const (
	PhaseBoot          = "boot"
	PhaseWriteKeys     = "write-keys"
	PhaseBackup        = "backup"
	PhaseWriteLost     = "write-lost-keys"
	PhaseLoseQuorum    = "lose-quorum"
	PhaseSurvey        = "survey"
	PhaseRestore       = "restore"
	PhaseSurvivorOS    = "survivor-os"
	PhaseJoin1         = "join-1"
	PhaseJoin2         = "join-2"
	PhaseVerify        = "verify"
	PhaseOldMasterBack = "old-master-back"
	PhaseSurvivorDisk  = "survivor-disk"
)

// phase is one timed part of the drill, run in table order.
type phase struct {
	ID, Title string
	// Recovery marks the phases from quorum lost to full membership.
	Recovery bool
	Run      func(context.Context) error
}

// run is one drill's state, filled in by its phases in order.
type run struct {
	*lab
	rep *Report

	old                    []*master // the three masters before the loss
	survivor, join1, join2 *master
	oldState               clusterState
	revAtBackup            int64 // the cluster's revision when the backup was taken
	backupDisk             string
	pl                     *plan.Plan
	planBytes              []byte
	tokStore, tokFile      string

	oldCli *clientv3.Client // the old cluster, until the loss
	cli0   *clientv3.Client // the survivor, from its restore on
	all    *clientv3.Client // the three new members
}

// phases is the drill, in order.
func (r *run) phases() []phase {
	return []phase{
		{ID: PhaseBoot, Title: "boot 3 masters, form the TLS cluster", Run: r.boot},
		{ID: PhaseWriteKeys, Title: "write the keys", Run: r.writeKeys},
		{ID: PhaseBackup, Title: "etcd-rescue backup onto the backup volume", Run: r.backup},
		{ID: PhaseWriteLost, Title: "write the keys after the backup (master-1 dies halfway)", Run: r.writeLost},
		{ID: PhaseLoseQuorum, Title: "lose quorum (kill 2 masters, reset the survivor)", Recovery: true, Run: r.loseQuorum},
		{ID: PhaseSurvey, Title: "survey the 3 masters' data dirs and the backup", Recovery: true,
			Run: func(context.Context) error { return r.surveyMasters() }},
		{ID: PhaseRestore, Title: "restore the survivor (rescue image, source " + r.source() + ")", Recovery: true, Run: r.restore},
		{ID: PhaseSurvivorOS, Title: "survivor boots its OS: one-member cluster", Recovery: true, Run: r.survivorOS},
		{ID: PhaseJoin1, Title: fmt.Sprintf("join master-%d (rescue image, then its OS)", r.join1.idx), Recovery: true,
			Run: func(context.Context) error { return r.join(r.join1, 2) }},
		{ID: PhaseJoin2, Title: fmt.Sprintf("join master-%d (rescue image, then its OS)", r.join2.idx), Recovery: true,
			Run: func(context.Context) error { return r.join(r.join2, 3) }},
		{ID: PhaseVerify, Title: "verify", Run: r.verify},
		{ID: PhaseOldMasterBack, Title: "an old master comes back with its old data", Run: r.oldMasterBack},
		{ID: PhaseSurvivorDisk, Title: "survivor's disk after power-off: old data kept, signer removed", Run: r.survivorDisk},
	}
}

// newRun is a drill on the lab: masters 0-2 form the old cluster, master
// 0 survives, and masters 3 and 4 join as the new etcd-1 and etcd-2.
func newRun(l *lab, rep *Report) *run {
	r := &run{lab: l, rep: rep}
	r.old = []*master{newMaster(l.o.Profile, 0, 0), newMaster(l.o.Profile, 1, 1), newMaster(l.o.Profile, 2, 2)}
	r.survivor = r.old[0]
	r.join1, r.join2 = newMaster(l.o.Profile, 3, 1), newMaster(l.o.Profile, 4, 2)
	return r
}

// runPhases runs phases in order, timing each, and stops at the first
// that fails; the report's Recovery is set once the last recovery phase
// passed.
func (r *run) runPhases(ctx context.Context, phases []phase) error {
	lastRecovery := -1
	for i, p := range phases {
		if p.Recovery {
			lastRecovery = i
		}
	}
	var recovery time.Duration
	for i, p := range phases {
		start := time.Now()
		r.o.Log("=== phase %s: %s", p.ID, p.Title)
		if err := p.Run(ctx); err != nil {
			r.rep.FailedPhase = p.ID
			return fmt.Errorf("phase %q (%s): %w", p.ID, p.Title, err)
		}
		d := time.Since(start)
		r.rep.Phases = append(r.rep.Phases, Phase{ID: p.ID, Name: p.Title, Seconds: d.Seconds()})
		r.o.Log("=== phase %s: done in %s", p.ID, d.Round(100*time.Millisecond))
		if p.Recovery {
			recovery += d
		}
		if i == lastRecovery {
			r.rep.Recovery = recovery.Seconds()
		}
	}
	return nil
}

// close closes the run's etcd clients.
func (r *run) close() {
	for _, c := range []*clientv3.Client{r.oldCli, r.cli0, r.all} {
		if c != nil {
			c.Close()
		}
	}
}

func (r *run) newMasters() []*master { return []*master{r.survivor, r.join1, r.join2} }

// boot starts the three old masters at once from their own disks and waits
// for their TLS cluster.
func (r *run) boot(context.Context) error {
	var initial []plan.Member
	for _, m := range r.old {
		initial = append(initial, m.planMember())
	}
	var etcdNames []string
	for _, m := range r.old {
		m.fx.InitialCluster = plan.InitialCluster(initial...) // what kubeadm wrote; OpenShift discovers it
		r.dns.SetA(m.fx.DNSName, m.fx.IP)
		etcdNames = append(etcdNames, m.fx.DNSName)
	}
	r.dns.SetEtcdSRV(domain, peerPort, etcdNames...)

	for _, m := range r.old {
		if err := r.writeDisk(m, true); err != nil {
			return err
		}
	}
	for _, m := range r.old {
		if err := r.startOS(m, fmt.Sprintf("master-%d", m.idx)); err != nil {
			return err
		}
	}
	for _, m := range r.old {
		if err := r.waitOS(m); err != nil {
			return err
		}
	}
	var err error
	if r.oldCli, err = r.client(r.old[0].clientURL(), r.old[1].clientURL(), r.old[2].clientURL()); err != nil {
		return err
	}
	if r.oldState, err = r.waitMembers(r.oldCli, 3, 5*time.Minute); err != nil {
		return err
	}
	r.rep.OldClusterID = fmt.Sprintf("%x", r.oldState.ClusterID)
	return nil
}

func (r *run) writeKeys(ctx context.Context) error {
	_, err := putKeys(ctx, r.oldCli, 0, r.o.Keys)
	return err
}

// backup takes the backup with etcd-rescue's own backup and puts it on
// an ext4 volume for the rescue image.
func (r *run) backup(ctx context.Context) error {
	prof, err := profile.Get(r.o.Profile)
	if err != nil {
		return err
	}
	tree := filepath.Join(r.dir, "backup-volume")
	var log strings.Builder
	set, err := backup.Save(ctx, backup.SaveOptions{Client: r.clientConfig(r.old[0].clientURL()), Root: r.old[0].tree,
		Profile: prof, OutDir: filepath.Join(tree, "etcd"), Log: &log})
	r.o.Log("backup:\n%s", log.String())
	if err != nil {
		return err
	}
	r.o.Log("backup written: %s and %s", set.Snapshot, set.Resources)
	size, err := dirSize(tree)
	if err != nil {
		return err
	}
	r.rep.BackupMiB = float64(size) / (1 << 20)
	r.backupDisk, err = ext4Image(filepath.Join(r.dir, "backup.ext4"), tree, "backup", int(size>>20)*2+32)
	return err
}

// writeLost writes the keys after the backup; master-1 dies halfway, so
// its data dir is staler than master-0's and fresher than the backup, and
// every later write has master-0 in its quorum.
func (r *run) writeLost(ctx context.Context) error {
	resp, err := r.oldCli.Get(ctx, "/registry/drill/backup-taken")
	if err != nil {
		return err
	}
	r.revAtBackup = resp.Header.Revision
	half := r.o.Keys + r.o.Lost/2
	rev, err := putEach(ctx, r.oldCli, r.o.Keys, half)
	if err != nil {
		return err
	}
	// master-1 holds the first half when it dies: fresher than the backup.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := r.oldCli.Status(sctx, r.old[1].clientURL())
		cancel()
		if err == nil && st.Header.Revision >= rev {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("master-1 did not apply revision %d: %v", rev, err)
		}
	}
	// The client leaves master-1 first: a request to a powered-off peer
	// would wait for its deadline.
	r.oldCli.SetEndpoints(r.old[0].clientURL(), r.old[2].clientURL())
	r.old[1].vm.Kill()
	r.rep.MaxRevisionBeforeLoss, err = putEach(ctx, r.oldCli, half, r.o.Keys+r.o.Lost)
	return err
}

// source is the restore source the plan names.
func (r *run) source() string {
	if r.o.Source == "" {
		return plan.SourceBackup
	}
	return r.o.Source
}

// keysKept is how many of the keys the recovered cluster must hold: all of
// them from the survivor's data, those before the backup from the backup.
func (r *run) keysKept() int {
	if r.source() == plan.SourceSurvivorData {
		return r.o.Keys + r.o.Lost
	}
	return r.o.Keys
}

// loseQuorum powers two masters off hard; the survivor, without quorum, is
// reset into the rescue image (by the next phase). The operator then
// writes the plan and the join tokens.
func (r *run) loseQuorum(context.Context) error {
	r.oldCli.Close()
	r.oldCli = nil
	for _, m := range r.old {
		m.vm.Kill()
	}
	r.pl = &plan.Plan{
		Version: plan.Version, Cluster: plan.Cluster{Name: cluster, Domain: domain}, Profile: r.o.Profile,
		Survivor: r.survivor.fx.MemberName,
		Members:  []plan.Member{r.survivor.planMember(), r.join1.planMember(), r.join2.planMember()},
		Signer:   plan.Signer{Address: fmt.Sprintf("https://%s:%d", r.survivor.fx.IP, 9943)},
		Source:   r.o.Source,
	}
	var err error
	if r.planBytes, err = r.pl.Marshal(); err != nil {
		return err
	}
	if _, err := plan.Parse(r.planBytes); err != nil {
		return fmt.Errorf("drill plan: %w", err)
	}
	r.tokStore, r.tokFile = filepath.Join(r.dir, "tokens.json"), filepath.Join(r.dir, "tokens.txt")
	_, err = signer.GenerateTokens(r.pl, r.tokStore, r.tokFile, 2*time.Hour)
	return err
}

// restore boots the survivor into the rescue image with the restore role
// and the backup volume, and waits for RESTORE-OK and the power-off.
func (r *run) restore(context.Context) error {
	cfg, err := ignition.Build(ignition.Options{Plan: r.planBytes, Role: ignition.Role{Role: ignition.RoleRestore, After: ignition.AfterReboot}})
	if err != nil {
		return err
	}
	store, err := os.ReadFile(r.tokStore)
	if err != nil {
		return err
	}
	if cfg, err = addIgnitionFile(cfg, roles.SignerTokensFile, store, 0o600); err != nil {
		return err
	}
	p := filepath.Join(r.dir, "restore.ign")
	if err := os.WriteFile(p, cfg, 0o600); err != nil {
		return err
	}
	v, err := r.rescue("restore", r.survivor.mac, p, r.survivor.disk, r.backupDisk)
	if err != nil {
		return err
	}
	if _, err := v.Expect("RESTORE-OK", 10*time.Minute); err != nil {
		return err
	}
	return v.Wait(2 * time.Minute)
}

// survivorOS boots the restored survivor into its OS: a one-member
// cluster with a new cluster ID.
func (r *run) survivorOS(context.Context) error {
	if err := r.bootOS(r.survivor, "master-0-restored"); err != nil {
		return err
	}
	var err error
	if r.cli0, err = r.client(r.survivor.clientURL()); err != nil {
		return err
	}
	st, err := r.waitMembers(r.cli0, 1, 5*time.Minute)
	if err != nil {
		return err
	}
	r.rep.NewClusterID = fmt.Sprintf("%x", st.ClusterID)
	if st.ClusterID == r.oldState.ClusterID {
		return fmt.Errorf("the restored cluster kept the old cluster ID %x", st.ClusterID)
	}
	return nil
}

// join brings a new master in: the rescue image with the join role, then
// its OS, until the cluster has members voting members.
func (r *run) join(nm *master, members int) error {
	// The operator points etcd-N at the new master.
	r.dns.SetA(nm.fx.DNSName, nm.fx.IP)
	if err := r.writeDisk(nm, false); err != nil {
		return err
	}
	tok, err := signer.ReadToken(r.tokFile, nm.fx.MemberName)
	if err != nil {
		return err
	}
	cfg, err := ignition.Build(ignition.Options{Plan: r.planBytes, Token: []byte(tok),
		Role: ignition.Role{Role: ignition.RoleJoin, Member: nm.fx.MemberName, After: ignition.AfterReboot}})
	if err != nil {
		return err
	}
	p := filepath.Join(r.dir, fmt.Sprintf("join-%d.ign", nm.idx))
	if err := os.WriteFile(p, cfg, 0o600); err != nil {
		return err
	}
	v, err := r.rescue(fmt.Sprintf("join-%d", nm.idx), nm.mac, p, nm.disk)
	if err != nil {
		return err
	}
	if _, err := v.Expect("JOIN-OK", 10*time.Minute); err != nil {
		return err
	}
	if err := v.Wait(2 * time.Minute); err != nil {
		return err
	}
	if err := r.bootOS(nm, fmt.Sprintf("master-%d", nm.idx)); err != nil {
		return err
	}
	_, err = r.waitMembers(r.cli0, members, 10*time.Minute)
	return err
}

// verify checks the recovered cluster: HashKV, keys, revision, signer.
func (r *run) verify(ctx context.Context) error {
	var err error
	if r.all, err = r.client(r.survivor.clientURL(), r.join1.clientURL(), r.join2.clientURL()); err != nil {
		return err
	}
	if _, err := r.waitMembers(r.all, 3, 2*time.Minute); err != nil {
		return err
	}
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// A write through the new cluster, then HashKV at one revision.
	resp, err := r.all.Put(vctx, "/registry/drill/verified", time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return err
	}
	rep := r.rep
	rev := resp.Header.Revision
	rep.RevisionAfter = rev
	if rev <= rep.MaxRevisionBeforeLoss {
		return fmt.Errorf("revision %d after the recovery is not above the old cluster's %d", rev, rep.MaxRevisionBeforeLoss)
	}
	var hashes []string
	for i, m := range r.newMasters() {
		h, err := waitHashKV(vctx, r.all, m.clientURL(), rev)
		if err != nil {
			return err
		}
		hashes = append(hashes, fmt.Sprintf("%s=%d", m.fx.NodeName, h))
		if i == 0 {
			rep.HashKV = h
		} else if h != rep.HashKV {
			return fmt.Errorf("HashKV differs at revision %d: %s", rev, strings.Join(hashes, ", "))
		}
		one, err := r.client(m.clientURL())
		if err != nil {
			return err
		}
		err = checkKeys(vctx, one, r.keysKept())
		one.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", m.fx.NodeName, err)
		}
	}
	rep.KeysChecked = r.keysKept()
	r.o.Log("HashKV at revision %d: %s", rev, strings.Join(hashes, ", "))
	// The recovery service stopped at full membership and removed itself.
	if _, err := r.survivor.vm.Expect("SIGNER-STOPPED", 2*time.Minute); err != nil {
		return err
	}
	if _, err := r.survivor.vm.ExpectRE(regexp.MustCompile(`signer: removed .*etcd-rescue-signer.service`), time.Minute); err != nil {
		return err
	}
	if c, err := r.n.Dial(vctx, "tcp", strings.TrimPrefix(r.pl.Signer.Address, "https://")); err == nil {
		c.Close()
		return fmt.Errorf("the signer still listens on %s", r.pl.Signer.Address)
	}
	return nil
}

// oldMasterBack boots an old master with its old data while DNS names it
// again: its etcd is refused by the new members and the new cluster does
// not notice (old data is never reused).
func (r *run) oldMasterBack(ctx context.Context) error {
	back := r.old[1]
	r.dns.SetA(back.fx.DNSName, back.fx.IP)
	defer r.dns.SetA(back.fx.DNSName, r.join1.fx.IP)
	if err := r.bootOS(back, "old-master-1"); err != nil {
		return err
	}
	if _, err := back.vm.Expect("cluster ID mismatch", 3*time.Minute); err != nil {
		return err
	}
	st, err := r.waitMembers(r.all, 3, time.Minute)
	if err != nil {
		return err
	}
	if fmt.Sprintf("%x", st.ClusterID) != r.rep.NewClusterID {
		return fmt.Errorf("cluster ID %x after the old master came back, was %s", st.ClusterID, r.rep.NewClusterID)
	}
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, m := range r.newMasters() {
		h, err := waitHashKV(vctx, r.all, m.clientURL(), r.rep.RevisionAfter)
		if err != nil {
			return err
		}
		if h != r.rep.HashKV {
			return fmt.Errorf("%s: HashKV at revision %d is %d after the old master came back, was %d", m.fx.NodeName, r.rep.RevisionAfter, h, r.rep.HashKV)
		}
	}
	back.vm.Kill()
	return nil
}

// survivorDisk powers the new masters off and reads the survivor's disk:
// one restore run kept with the old data dir, the signer's unit gone.
func (r *run) survivorDisk(context.Context) error {
	for _, m := range r.newMasters() {
		m.vm.Kill()
	}
	disk := r.survivor.disk
	// The VM was powered off hard: replay the ext4 journal first, as the
	// next mount would (debugfs reads without it).
	if out, err := exec.Command("e2fsck", "-fy", disk).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			return fmt.Errorf("e2fsck of the survivor's disk: %v: %s", err, out)
		}
	}
	runs, err := debugfsList(disk, "/var/lib/etcd-rescue/backup")
	if err != nil {
		return err
	}
	if len(runs) != 1 {
		return fmt.Errorf("restore runs kept on the survivor's disk: %v, want one", runs)
	}
	kept := "/var/lib/etcd-rescue/backup/" + runs[0] + "/var/lib/etcd"
	files, err := debugfsList(disk, kept+"/member/snap")
	if err != nil {
		return err
	}
	if !slices.Contains(files, "db") {
		return fmt.Errorf("the old data dir is not kept in %s: %v", kept, files)
	}
	for _, gone := range []string{signer.UnitPath, signer.UnitWantsPath} {
		if out, _ := exec.Command("debugfs", "-R", "stat /"+gone, disk).CombinedOutput(); !strings.Contains(string(out), "not found") {
			return fmt.Errorf("/%s is still on the survivor's disk", gone)
		}
	}
	r.rep.KeptDataDir = kept
	return nil
}

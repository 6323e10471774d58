// Package restore restores etcd quorum on the surviving master: it verifies
// the backup, keeps the old data dir, manifest and certificates aside,
// restores the snapshot as a new one-member cluster (new cluster ID, the
// revision bumped past anything clients saw), puts back the static pod
// resources, and rewrites the etcd static pod manifest for one member.
//
// It works on a master root mounted anywhere (the rescue image, offline)
// and on a live master (online: static pods and the kubelet are stopped
// first and started again after). Every step checks real state first, so a
// run interrupted at any point resumes from the journal and ends the same.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcdversion"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/live"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/lock"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// Options configure a restore.
type Options struct {
	// Root is the master's root: "/" on a live host, a mount point offline.
	Root string
	// BackupDir is a folder holding the backup, or one backup file.
	BackupDir string
	// Source is what the restore starts from: plan.SourceBackup (also
	// when empty) or plan.SourceSurvivorData, the survivor's own data dir.
	Source string
	// FromDataDir is the survivor's data dir for plan.SourceSurvivorData;
	// empty means the data dir the master's etcd manifest names.
	FromDataDir string
	// BackupTimestamp picks a backup by its timestamp instead of the newest.
	BackupTimestamp string
	// SnapshotOnly accepts a snapshot without static resources.
	SnapshotOnly bool
	// Member is the restored member, the only one of the new cluster: its
	// Name and PeerURL are required.
	Member plan.Member
	// Profile is the master layout; nil means detect it from Root.
	Profile *profile.Profile
	// ClusterToken is the restored cluster's initial-cluster-token. Empty
	// means "etcd-rescue-<run id>", which makes the cluster ID new even
	// when the member's name and URL are the old ones.
	ClusterToken string
	// RevisionBump overrides the computed revision bump when > 0.
	RevisionBump int64
	// EtcdVersion is the etcd version the master runs; empty means read it
	// from the manifest's image tag or the old data dir.
	EtcdVersion string
	// SkipHashCheck accepts a snapshot without its sha256 trailer.
	SkipHashCheck bool
	// Force restores even though old members still answer on their peer URLs.
	Force bool
	// DryRun prints the plan and changes nothing.
	DryRun bool
	// Online stops and starts the static pods and kubelet of a live master.
	Online bool
	// Host runs the online steps; required when Online.
	Host Host
	// Out receives progress lines and the final marker.
	Out io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AfterStep is called after each step completes (tests stop runs there).
	AfterStep func(step string)
	// DialTimeout bounds the check that old peers are down. Default 2s.
	DialTimeout time.Duration
	// DiskFree reports free bytes at a path; nil means statfs.
	DiskFree func(path string) (uint64, error)
	// Progress is how the long reads and writes (the backup's staging
	// copy and check) show bytes done, rate and time left on Out; the
	// zero value shows nothing.
	Progress progress.Mode
}

// Host stops and starts what runs etcd on a live master.
type Host interface {
	// StopKubelet stops the kubelet service.
	StopKubelet(ctx context.Context) error
	// StartKubelet starts the kubelet service.
	StartKubelet(ctx context.Context) error
	// WaitPodsGone waits until no container of the static pods runs.
	WaitPodsGone(ctx context.Context, pods []live.PodRef) error
}

// Run restores. It prints every step and ends with RESTORE-OK or
// RESTORE-FAILED: reason.
func Run(ctx context.Context, o Options) error {
	r, err := Prepare(o)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Execute(ctx, nil, "")
}

// Restore is a restore whose inputs are loaded and checked and whose
// journal is begun (or resumed); nothing on the root has changed yet.
type Restore struct{ r *restore }

// Prepare loads and checks a restore's inputs and begins or resumes its
// run. On error it prints RESTORE-FAILED: reason.
func Prepare(o Options) (*Restore, error) {
	r, err := newRestore(o)
	if err != nil {
		if o.Out != nil {
			fmt.Fprintf(o.Out, "RESTORE-FAILED: %v\n", oneLine(err))
		}
		return nil, err
	}
	return &Restore{r: r}, nil
}

// Close removes the backup's scratch copy and what a dry run extracted
// outside the root, and releases the root's lock.
func (x *Restore) Close() { x.r.cleanup() }

// Execute runs the restore's steps followed by more (the rescue image's
// restore role appends the signer's install steps) as one journaled list,
// printing one numbered list and one marker line: RESTORE-OK with the
// restore's summary, and done after it when given, or RESTORE-FAILED. The
// run is recorded finished when every step succeeded.
func (x *Restore) Execute(ctx context.Context, more []steps.Step, done string) error {
	r, o := x.r, x.r.o
	runner := &steps.Runner{Operation: "restore", Out: r.out, DryRun: o.DryRun, Journal: r.j, Now: o.Now, AfterStep: o.AfterStep}
	if o.DryRun {
		runner.Journal = nil
	}
	err := runner.Run(ctx, append(r.steps(), more...), func() string {
		if done == "" {
			return r.summary()
		}
		return r.summary() + "; " + done
	})
	if err == nil && !o.DryRun {
		err = r.removeScratch()
	}
	if err != nil {
		r.dropStaged()
	}
	if err == nil && !o.DryRun && r.j.Finished == nil {
		t := r.now().UTC()
		r.j.Finished = &t
		if serr := r.j.Save(); serr != nil {
			return serr
		}
	}
	return err
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// restore is one run's state.
type restore struct {
	o      Options
	out    io.Writer
	prof   *profile.Profile
	member plan.Member
	j      *journal.Journal
	set    *backup.Set
	report *backup.Report
	// backupFile names the backup this run restores (journaled once the
	// run changes anything).
	backupFile string
	tmpDirs    []string
	// root resolves every path on the master as the master sees it.
	root *rootfs.Root
	// lock keeps other runs off the root from Prepare to Close.
	lock *lock.Lock
	// oldDataErr says why the old data dir could not be read, when it
	// exists but is damaged or not etcd's.
	oldDataErr error
	// survivor is the survey of the survivor's data dir (survivor-data
	// source), set by verify-survivor-data.
	survivor *survey.Source
	// staged is the snapshot's copy in the staging folder, written and
	// checked by this process's verify-backup step; "" when there is none.
	staged string
	// noStaging says staging a single-file backup's snapshot failed to
	// write: the verify-backup step does not try it again.
	noStaging bool
}

func (r *restore) now() time.Time {
	if r.o.Now != nil {
		return r.o.Now()
	}
	return time.Now()
}

func newRestore(o Options) (*restore, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.Online && o.Source == plan.SourceSurvivorData {
		return nil, errors.New("a restore from the survivor's own data runs offline: stop the kubelet and etcd on this master (or boot the rescue image) and run it without --online")
	}
	if o.Online && o.Host == nil {
		return nil, errors.New("online restore needs access to the kubelet and container runtime of this host")
	}
	switch {
	case o.Source == plan.SourceSurvivorData && o.BackupDir != "":
		return nil, errors.New("both a backup and the survivor's data dir given: restore from one (`etcd-rescue survey` says which keeps more)")
	case o.Source == plan.SourceSurvivorData:
	case o.Source != "" && o.Source != plan.SourceBackup:
		return nil, fmt.Errorf("restore source %q is unknown: use %s or %s", o.Source, plan.SourceBackup, plan.SourceSurvivorData)
	case o.BackupDir == "":
		return nil, errors.New("no backup given: pass --backup DIR (the folder with snapshot_<ts>.db and static_kuberesources_<ts>.tar.gz), or --from-data-dir to restore from this master's own data")
	}
	if o.Member.Name == "" {
		return nil, errors.New("no member name given: pass --name, the etcd member name of this master")
	}
	if o.EtcdVersion != "" {
		if _, err := etcdversion.Parse(o.EtcdVersion); err != nil {
			return nil, fmt.Errorf("--etcd-version: %w", err)
		}
	}
	if _, err := plan.ParseInitialCluster(plan.InitialCluster(o.Member)); err != nil {
		return nil, fmt.Errorf("member %s: %w", o.Member.Name, err)
	}
	root, err := rootfs.Open(o.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: mount the master's root filesystem and pass it with --root", err)
	}
	o.Root = root.Path
	// The lock comes first: the journal and everything else is read under it.
	l, err := lock.Acquire(root.Path)
	if err != nil {
		return nil, err
	}
	r := &restore{o: o, out: o.Out, member: o.Member, root: root, lock: l}
	if err := r.load(); err != nil {
		r.cleanup()
		return nil, err
	}
	return r, nil
}

// load finds the layout, begins or resumes the journal and checks every
// input the steps will use; it changes nothing on the root.
func (r *restore) load() error {
	o := r.o
	if o.Profile != nil {
		p := *o.Profile
		r.prof = &p
	} else {
		p, err := profile.DetectIn(r.root)
		if err != nil {
			return err
		}
		r.prof = p
	}
	warnProxy(r.out, r.member.PeerURL)

	j, resumed, err := journal.Begin(r.root.Path, "restore", r.params(), r.now(), o.DryRun)
	if err != nil {
		return err
	}
	if resumed {
		fmt.Fprintf(r.out, "resuming restore run %s from %s\n", j.RunID, j.File())
	}
	r.j = j
	if err := j.CheckInRoot(r.root.Path, "keptDataDir"); err != nil {
		return err
	}
	return r.checkInputs()
}

// params identify a run. The backup is not one of them: the rescue image
// may mount the backup volume elsewhere after a power loss, and a newer
// backup may need --backup-timestamp to be passed over; the backup itself
// is checked by name in the verify step.
func (r *restore) params() map[string]string {
	p := map[string]string{
		"name":           r.member.Name,
		"initialCluster": plan.InitialCluster(r.member),
		"profile":        r.prof.Name,
		"token":          r.o.ClusterToken,
	}
	if r.fromSurvivor() {
		p["source"] = plan.SourceSurvivorData
	}
	return p
}

// token is the restored cluster's initial-cluster-token.
func (r *restore) token() string {
	if r.o.ClusterToken != "" {
		return r.o.ClusterToken
	}
	return "etcd-rescue-" + r.j.RunID
}

// abs is the host path of a path on the master, symlinks followed inside
// the root. checkInputs resolved every path the steps use, so an error here
// (a symlink loop) only comes from a root changed under the run: the path
// is then returned as written, where the step's own operation fails.
func (r *restore) abs(rel string) string {
	p, err := r.root.Resolve(rel)
	if err != nil {
		return filepath.Join(r.root.Path, rel)
	}
	return p
}

// workDir holds files the run extracts: the snapshot of a single-file
// backup when the verify-backup step does not stage it in one pass (see
// checkSingleFile). A dry run uses a temporary folder outside the root.
func (r *restore) workDir() (string, error) {
	if r.o.DryRun {
		d, err := os.MkdirTemp("", "etcd-rescue-dry-run-")
		if err != nil {
			return "", err
		}
		r.tmpDirs = append(r.tmpDirs, d)
		return d, nil
	}
	return filepath.Join(r.abs(journal.Dir), "work", r.j.RunID), nil
}

func (r *restore) cleanup() {
	if err := r.report.Close(); err != nil {
		fmt.Fprintf(r.out, "warning: remove the backup's scratch copy: %v\n", err)
	}
	for _, d := range r.tmpDirs {
		os.RemoveAll(d)
	}
	r.tmpDirs = nil
	if r.lock != nil {
		r.lock.Release()
		r.lock = nil
	}
}

func (r *restore) steps() []steps.Step {
	verify, restoreData := r.verifyBackupStep(), []steps.Step{r.restoreSnapshotStep(), r.restoreResourcesStep()}
	if r.fromSurvivor() {
		verify, restoreData = r.verifySurvivorStep(), []steps.Step{r.restoreSurvivorStep()}
	}
	list := []steps.Step{verify, r.preflightStep()}
	if r.o.Online {
		list = append(list, r.stopStaticPodsStep(), r.stopKubeletStep())
	}
	list = append(list, r.keepOldStateStep())
	list = append(list, restoreData...)
	list = append(list, r.rewriteManifestStep())
	if r.o.Online {
		list = append(list, r.startKubeletStep(), r.startStaticPodsStep())
	}
	return list
}

func (r *restore) summary() string {
	return fmt.Sprintf("member=%s cluster-id=%s revision=%s kept=%s",
		r.member.Name, r.j.Notes["clusterID"], r.j.Notes["revision"], r.j.BackupDir(r.o.Root))
}

func warnProxy(w io.Writer, peerURL string) {
	if via := proxyFor(peerURL); via != "" {
		fmt.Fprintf(w, "warning: the proxy %s would carry traffic to the etcd peer URL %s: add its host to NO_PROXY\n", via, peerURL)
	}
}

package restore

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/net/http/httpproxy"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

func (r *restore) verifyBackupStep() steps.Step {
	return steps.Step{
		Name:     "verify-backup",
		ReadOnly: true,
		Describe: func() string { return "find and verify the backup in " + r.o.BackupDir },
		Check:    func(context.Context) (steps.State, error) { return steps.ToDo, nil },
		Run: func(ctx context.Context) error {
			if err := r.report.Close(); err != nil { // a step re-run: drop the previous copy
				return err
			}
			set, err := backup.FindWith(r.o.BackupDir, backup.FindOptions{Timestamp: r.o.BackupTimestamp, AllowSnapshotOnly: r.o.SnapshotOnly})
			if err != nil {
				return err
			}
			r.set = set
			if err := r.sameBackupAsBefore(); err != nil {
				return err
			}
			wd, err := r.workDir()
			if err != nil {
				return err
			}
			rep, err := backup.VerifyContext(ctx, set, backup.Options{SkipHashCheck: r.o.SkipHashCheck, WorkDir: wd,
				Snapshot: r.checkSnapshot, SingleFile: r.checkSingleFile})
			if err != nil {
				return err
			}
			r.report = rep
			rep.Print(steps.Indent(r.out))
			return nil
		},
	}
}

// sameBackupAsBefore makes a resumed run restore the backup the first
// attempt chose: a newer backup appearing in between must not mix in.
func (r *restore) sameBackupAsBefore() error {
	name := filepath.Base(r.set.Snapshot)
	if r.set.Form == backup.SingleFile {
		name = filepath.Base(r.set.Resources)
	}
	r.backupFile = name
	prev := r.j.Notes["backupFile"] // written by the first step that changes anything
	switch {
	case prev == "":
	case prev != name && !r.restoreCommitted():
		return fmt.Errorf("this restore started from %s but now finds %s: pass --backup-timestamp to pick the same backup, or move %s aside to start over",
			prev, name, r.j.File())
	}
	return nil
}

func (r *restore) preflightStep() steps.Step {
	return steps.Step{
		Name:     "preflight",
		ReadOnly: true,
		Describe: func() string {
			return "check the etcd version, free disk, and that the old members are down (they would break the new cluster with \"request cluster ID mismatch\")"
		},
		Check: func(context.Context) (steps.State, error) {
			if r.restoreCommitted() {
				return steps.NotNeeded, nil // the data dir already holds the restored member
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error {
			if err := r.checkEtcdVersion(); err != nil {
				return err
			}
			if err := r.checkWritable(); err != nil {
				return err
			}
			if err := r.checkDisk(); err != nil {
				return err
			}
			if !r.o.Online {
				if err := checkNotRunning(r.abs(r.prof.DataDir)); err != nil {
					return err
				}
			}
			return r.checkOldPeers(ctx)
		},
	}
}

// checkWritable refuses a root mounted read-only before anything is tried.
func (r *restore) checkWritable() error {
	for _, p := range []string{r.o.Root, keep.NearestExisting(r.abs(r.prof.DataDir))} {
		if err := syscall.Access(p, 2 /* W_OK */); err != nil {
			return fmt.Errorf("%s is not writable (%v): mount the master's root read-write (mount -o remount,rw) and re-run", p, err)
		}
	}
	return nil
}

// checkDisk wants room for the restored db and its WAL: twice the snapshot.
func (r *restore) checkDisk() error {
	if r.fromSurvivor() {
		return r.checkSurvivorDisk()
	}
	need := uint64(2 * r.report.Snapshot.Size)
	if st, err := os.Stat(r.staged); r.staged != "" && err == nil {
		// The staged copy already holds the db.
		need -= min(need, uint64(st.Size()))
	}
	dir := keep.NearestExisting(r.abs(r.prof.DataDir))
	free, err := r.diskFree(dir)
	if err != nil {
		return fmt.Errorf("free space on %s: %w", dir, err)
	}
	fmt.Fprintf(r.out, "    free space on %s: %d MiB, restore needs %d MiB\n", dir, free>>20, need>>20)
	if free < need {
		return fmt.Errorf("%s has %d MiB free but the restore needs %d MiB (twice the snapshot): free space there first", dir, free>>20, need>>20)
	}
	return nil
}

func (r *restore) diskFree(p string) (uint64, error) {
	if r.o.DiskFree != nil {
		return r.o.DiskFree(p)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// checkOldPeers dials the peer URL of every other member the old data dir
// knows. One that answers would join the new cluster's traffic with the old
// cluster ID; the operator must power it off first (or pass --force).
func (r *restore) checkOldPeers(ctx context.Context) error {
	info, _ := r.oldData()
	if info == nil || len(info.Members) == 0 {
		fmt.Fprintf(r.out, "    old members: unknown (no readable old data dir); make sure the lost masters stay powered off\n")
		return nil
	}
	var alive []string
	for _, m := range info.Members {
		if m.Name == r.member.Name || contains(m.PeerURLs, r.member.PeerURL) {
			continue // this master's own old member: etcd is stopped here
		}
		for _, pu := range m.PeerURLs {
			state := r.dial(ctx, pu)
			fmt.Fprintf(r.out, "    old member %s %s: %s\n", m.Name, pu, state)
			if state == "answers" {
				alive = append(alive, m.Name+" ("+pu+")")
			}
		}
	}
	if len(alive) == 0 {
		return nil
	}
	msg := fmt.Sprintf("old members still answer on their peer URLs: %s. Power them off (or stop their etcd) first: they would reject the new cluster with \"request cluster ID mismatch\"", strings.Join(alive, ", "))
	if r.o.Force {
		fmt.Fprintf(r.out, "    warning: %s; going on because of --force\n", msg)
		return nil
	}
	return fmt.Errorf("%s; --force restores anyway", msg)
}

func (r *restore) dial(ctx context.Context, peerURL string) string {
	u, err := url.Parse(peerURL)
	if err != nil || u.Host == "" {
		return "not checked (bad URL)"
	}
	d := net.Dialer{Timeout: r.o.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		var dnsErr *net.DNSError
		if asDNS(err, &dnsErr) {
			return "not checked (name does not resolve)"
		}
		return "down"
	}
	c.Close()
	return "answers"
}

func asDNS(err error, target **net.DNSError) bool {
	for err != nil {
		if e, ok := err.(*net.DNSError); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// proxyFor returns the proxy the environment (HTTP(S)_PROXY, NO_PROXY)
// would use for a URL, or "".
func proxyFor(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	// Read the environment now: net/http caches it at first use.
	p, err := httpproxy.FromEnvironment().ProxyFunc()(u)
	if err != nil || p == nil {
		return ""
	}
	return p.Redacted()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Package backup takes, finds and verifies etcd backups in the forms the
// OpenShift 4.3 tools write: the pair snapshot_<ts>.db +
// static_kuberesources_<ts>.tar.gz (4.3.2 and later), the single file
// snapshot_db_kuberesources_<ts>.tar.gz (4.3.0 and 4.3.1), and a lone
// snapshot where the layout needs no static resources (kubeadm).
package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Form is the shape of a backup.
type Form string

const (
	// Pair is snapshot_<ts>.db with static_kuberesources_<ts>.tar.gz.
	Pair Form = "pair"
	// SingleFile is snapshot_db_kuberesources_<ts>.tar.gz holding both.
	SingleFile Form = "single-file"
	// SnapshotOnly is a snapshot with no static resources.
	SnapshotOnly Form = "snapshot-only"
)

// TimestampLayout is the time format of backup file names (date "+%F_%H%M%S").
const TimestampLayout = "2006-01-02_150405"

var (
	snapshotRe  = regexp.MustCompile(`^snapshot_(\d{4}-\d{2}-\d{2}_\d{6})\.db$`)
	resourcesRe = regexp.MustCompile(`^static_kuberesources_(\d{4}-\d{2}-\d{2}_\d{6})\.tar\.gz$`)
	singleRe    = regexp.MustCompile(`^snapshot_db_kuberesources_(\d{4}-\d{2}-\d{2}_\d{6})\.tar\.gz$`)
)

// Set is one backup: the files that belong together.
type Set struct {
	// Dir is the folder the backup was found in.
	Dir string
	// Timestamp is the <ts> part of the file names ("" for a bare snapshot file).
	Timestamp string
	Form      Form
	// Snapshot is the etcd snapshot file. For the single-file form it is set
	// once Verify has extracted the snapshot from the tarball.
	Snapshot string
	// Resources is the tarball with the static pod resources (the single
	// file itself for the single-file form); empty for SnapshotOnly.
	Resources string
	// Notes says what else was found and why it was not chosen.
	Notes []string
}

// FindOptions tunes Find.
type FindOptions struct {
	// Timestamp picks a backup by its <ts> instead of the newest.
	Timestamp string
	// AllowSnapshotOnly accepts a snapshot without static resources (kubeadm).
	AllowSnapshotOnly bool
}

// Find picks the newest complete backup in dir.
func Find(dir string) (*Set, error) { return FindWith(dir, FindOptions{}) }

// FindWith picks a backup in dir (or takes dir itself when it is a snapshot
// or single-file backup). Lone files of a pair are reported in Notes, and
// are an error when they are the newest backup: restoring an older backup
// than the operator expects must be a decision, not a surprise.
func FindWith(dir string, o FindOptions) (*Set, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fromFile(dir, o)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read backup folder: %w", err)
	}
	type cand struct{ snap, res, single string }
	byTS := map[string]*cand{}
	get := func(ts string) *cand {
		if byTS[ts] == nil {
			byTS[ts] = &cand{}
		}
		return byTS[ts]
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		n := e.Name()
		switch {
		case snapshotRe.MatchString(n):
			get(snapshotRe.FindStringSubmatch(n)[1]).snap = n
		case resourcesRe.MatchString(n):
			get(resourcesRe.FindStringSubmatch(n)[1]).res = n
		case singleRe.MatchString(n):
			get(singleRe.FindStringSubmatch(n)[1]).single = n
		}
	}
	if len(byTS) == 0 {
		return nil, fmt.Errorf("no backup in %s: expected snapshot_<YYYY-MM-DD_HHMMSS>.db with static_kuberesources_<same>.tar.gz, or snapshot_db_kuberesources_<ts>.tar.gz", dir)
	}
	var tss []string
	for ts := range byTS {
		tss = append(tss, ts)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(tss))) // the layout sorts as time

	if o.Timestamp != "" {
		if byTS[o.Timestamp] == nil {
			return nil, fmt.Errorf("no backup with timestamp %s in %s (found: %s)", o.Timestamp, dir, strings.Join(tss, ", "))
		}
		tss = []string{o.Timestamp}
	}

	var notes []string
	for i, ts := range tss {
		c := byTS[ts]
		set := &Set{Dir: dir, Timestamp: ts}
		switch {
		case c.snap != "" && c.res != "":
			set.Form, set.Snapshot, set.Resources = Pair, filepath.Join(dir, c.snap), filepath.Join(dir, c.res)
			if c.single != "" {
				notes = append(notes, fmt.Sprintf("%s ignored: the pair with the same timestamp is used", c.single))
			}
		case c.single != "":
			set.Form, set.Resources = SingleFile, filepath.Join(dir, c.single)
			if c.snap != "" {
				notes = append(notes, fmt.Sprintf("%s ignored: the single-file backup with the same timestamp is used", c.snap))
			}
		case c.snap != "" && o.AllowSnapshotOnly:
			set.Form, set.Snapshot = SnapshotOnly, filepath.Join(dir, c.snap)
		default:
			lone, missing := c.snap, "static_kuberesources_"+ts+".tar.gz"
			if lone == "" {
				lone, missing = c.res, "snapshot_"+ts+".db"
			}
			if i == 0 {
				return nil, fmt.Errorf("newest backup %s in %s is incomplete: %s has no %s (a backup interrupted while it was written?). "+
					"Copy the missing file next to it, or pick an older complete backup with --backup-timestamp",
					ts, dir, lone, missing)
			}
			notes = append(notes, fmt.Sprintf("%s ignored: it has no %s", lone, missing))
			continue
		}
		for _, older := range tss[i+1:] {
			notes = append(notes, fmt.Sprintf("older backup %s not used: the newest complete one is %s", older, ts))
		}
		set.Notes = notes
		return set, nil
	}
	return nil, fmt.Errorf("no complete backup in %s: %s", dir, strings.Join(notes, "; "))
}

func fromFile(path string, o FindOptions) (*Set, error) {
	n := filepath.Base(path)
	dir := filepath.Dir(path)
	switch {
	case singleRe.MatchString(n):
		return &Set{Dir: dir, Timestamp: singleRe.FindStringSubmatch(n)[1], Form: SingleFile, Resources: path}, nil
	case snapshotRe.MatchString(n):
		ts := snapshotRe.FindStringSubmatch(n)[1]
		res := filepath.Join(dir, "static_kuberesources_"+ts+".tar.gz")
		if _, err := os.Stat(res); err == nil {
			return &Set{Dir: dir, Timestamp: ts, Form: Pair, Snapshot: path, Resources: res}, nil
		}
		if o.AllowSnapshotOnly {
			return &Set{Dir: dir, Timestamp: ts, Form: SnapshotOnly, Snapshot: path}, nil
		}
		return nil, fmt.Errorf("%s has no static_kuberesources_%s.tar.gz beside it: copy it there, or restore the snapshot alone with --snapshot-only", path, ts)
	case strings.HasSuffix(n, ".db"):
		if !o.AllowSnapshotOnly {
			return nil, fmt.Errorf("%s is a bare snapshot: restore it alone with --snapshot-only", path)
		}
		return &Set{Dir: dir, Form: SnapshotOnly, Snapshot: path}, nil
	}
	return nil, errors.New(path + " is not a backup file: expected a folder, snapshot_<ts>.db or snapshot_db_kuberesources_<ts>.tar.gz")
}

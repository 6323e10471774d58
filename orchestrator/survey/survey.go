// Package survey reads every candidate source of a recovery offline, each
// survivor's data dir (its WAL included) and each backup, and ranks them by
// how much of the cluster's history they keep: which one the restore should
// use, and what every other choice would lose. Nothing is written to the
// sources: backends are opened read-only, WAL and snapshot files are only
// read. A damaged source is reported with its error; the survey goes on.
package survey

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
)

// Kind is what a source is.
type Kind string

const (
	// DataDir is a survivor's etcd data dir.
	DataDir Kind = "data-dir"
	// Backup is an etcd snapshot file, or a backup holding one.
	Backup Kind = "backup"
)

// PlanSource returns the restore source that uses this kind:
// "survivor-data" for a data dir, "backup" for a backup.
func (k Kind) PlanSource() string {
	if k == DataDir {
		return "survivor-data"
	}
	return "backup"
}

// Source is one candidate and what it would keep.
type Source struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"`
	// Error says why the source cannot be used ("" when it can).
	Error string   `json:"error,omitempty"`
	Notes []string `json:"notes,omitempty"`

	// ClusterID and MemberID come from the WAL (data dirs only).
	ClusterID ID       `json:"clusterID,omitempty"`
	MemberID  ID       `json:"memberID,omitempty"`
	Members   []Member `json:"members,omitempty"`
	// Version is the etcd version the backend records, "" when none.
	Version string `json:"version,omitempty"`

	// Index is the highest raft index the source keeps: for a data dir
	// the last committed entry its WAL holds (what a forced new cluster
	// keeps), for a backup the index applied to the snapshot. Term is its
	// raft term, 0 when unknown.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term,omitempty"`
	// Revision is the backend's revision; InWAL counts the writes that
	// are committed in the WAL but not yet in the backend, Uncommitted the
	// writes in WAL entries past the last index the member knew committed
	// (etcd does not sync a commit index alone, so the last acknowledged
	// writes are often there after a power loss). Together they bound the
	// revision a restore from the source reaches.
	Revision        int64  `json:"revision"`
	InWAL           Writes `json:"inWAL"`
	Uncommitted     Writes `json:"uncommitted"`
	RevisionAtLeast int64  `json:"revisionAtLeast"`
	RevisionAtMost  int64  `json:"revisionAtMost"`
	// Hash is a backup's integrity check: "sha256 ok", or "no sha256
	// trailer" when only bbolt's own check vouches for it.
	Hash string `json:"hash,omitempty"`

	WAL     *WAL     `json:"wal,omitempty"`
	Backend *Backend `json:"backend,omitempty"`

	// Rank is 1 for the freshest usable source.
	Rank        int  `json:"rank"`
	Recommended bool `json:"recommended"`
	// OtherCluster is set when the source belongs to another cluster than
	// the recommended one: its indexes do not compare, and it is not
	// counted as a loss.
	OtherCluster string `json:"otherCluster,omitempty"`
	// LostEntries and LostRevisions are what choosing this source loses
	// against the recommended one. LostExact is false when LostRevisions
	// is a lower bound (writes in a WAL whose outcome is not known offline).
	LostEntries   uint64 `json:"lostEntries"`
	LostRevisions int64  `json:"lostRevisions"`
	LostExact     bool   `json:"lostExact"`
}

// Usable says whether a restore can start from the source.
func (s *Source) Usable() bool { return s.Error == "" }

// Report is the ranked survey.
type Report struct {
	// Sources are ranked: the recommended one first, damaged ones last.
	Sources []*Source `json:"sources"`
	// Recommended is the source the plan should use, nil when none is usable.
	Recommended *Source `json:"-"`
	// PlanSource is the restore source for Recommended: "survivor-data"
	// or "backup" ("" when nothing is usable).
	PlanSource string `json:"planSource,omitempty"`
	// RecommendedPath is Recommended's path.
	RecommendedPath string `json:"recommended,omitempty"`
}

// Options says what to survey.
type Options struct {
	DataDirs []string
	Backups  []string
	// WorkDir receives the snapshot of a single-file backup; empty means
	// a temporary folder, removed afterwards.
	WorkDir string
	// Log receives a line for everything read; nil discards them.
	Log io.Writer
	// Progress is how the long reads (a WAL, a backup's checks) show
	// bytes done, rate and time left on Log; the zero value (progress.Off,
	// for --json) shows nothing.
	Progress progress.Options
}

// meterFunc starts a meter for a read of total bytes.
type meterFunc func(label string, total int64) *progress.Meter

// Run reads every source and ranks them. Only a survey without any source
// is an error: a damaged source is reported in its row.
func Run(o Options) (*Report, error) {
	if len(o.DataDirs)+len(o.Backups) == 0 {
		return nil, errors.New("nothing to survey: give data dirs (--data-dir, or --root with the master's profile) and/or backups (--backup)")
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(logw, format+"\n", args...) }
	meter := func(label string, total int64) *progress.Meter { return progress.New(logw, label, total, o.Progress) }
	var sources []*Source
	for _, d := range o.DataDirs {
		sources = append(sources, readDataDir(d, logf, meter))
	}
	for _, b := range o.Backups {
		sources = append(sources, readBackup(b, o.WorkDir, logf, meter))
	}
	return rank(sources), nil
}

// progressEvery is how often a long read says it is still going.
var progressEvery = 5 * time.Second

// withProgress runs a read that gives no progress of its own, and that
// nothing outside can measure, and prints a line every progressEvery while
// it runs. A panic in the read (etcd's decoders panic on some damaged
// records) becomes its error.
func withProgress(logf func(string, ...any), what string, read func() error) error {
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- guard(read) }()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			logf("  still %s (%s)", what, time.Since(start).Round(time.Second))
		}
	}
}

// guard runs read, a panic in it (etcd's and bbolt's decoders panic on
// some damaged records) becoming its error.
func guard(read func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return read()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Package journal keeps the state file of a recovery run in the target root
// (var/lib/etcd-rescue/<operation>-state.json, for example restore-state.json),
// so that a run interrupted by a crash or a power loss resumes where it
// stopped and ends in the same result. Begin is the one way an operation
// starts or resumes its run.
//
// The journal is a record, not the truth: every step still checks real state
// before it acts. What the journal adds is what real state cannot tell: the
// run's identity (and so its backup folder), the parameters it was started
// with, where each kept file went, and intentions written before a step's
// commit point.
package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// Dir is the folder, relative to the target root, that holds the journal and
// everything a run keeps aside.
const Dir = "var/lib/etcd-rescue"

// Journal is the persistent state of one operation (restore, join) on one root.
type Journal struct {
	// Operation is "restore" or "join".
	Operation string `json:"operation"`
	// RunID is the UTC timestamp of the run's first start (20060102-150405).
	// It names the backup folder, so a resumed run keeps using the same one.
	RunID string `json:"runID"`
	// Params is what the run was started with; a re-run with other
	// parameters is refused while the run is unfinished.
	Params map[string]string `json:"params,omitempty"`
	// Steps records each step's last state.
	Steps map[string]StepRecord `json:"steps,omitempty"`
	// Kept lists what was moved or copied aside, in order.
	Kept []Kept `json:"kept,omitempty"`
	// Created lists the host paths of files the run wrote where nothing
	// was before (the signer's unit, a new certificate). Each is recorded
	// before it is written, so an undo knows to move it aside even after
	// a crash in between.
	Created []string `json:"created,omitempty"`
	// Notes holds values a step computed that later steps or re-runs need
	// (the bump amount, the new cluster ID, intentions before a rename).
	Notes map[string]string `json:"notes,omitempty"`
	// Finished is set when the whole operation ended OK.
	Finished *time.Time `json:"finished,omitempty"`

	path string
}

// StepRecord is the state of one step.
type StepRecord struct {
	State string    `json:"state"` // started, done or failed
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// Kept is one file or directory moved or copied out of the way. It is
// recorded before the move, so a run that crashes in the middle finds it
// and finishes the move, and an undo knows where everything went.
type Kept struct {
	From string `json:"from"`
	To   string `json:"to"`
	// How is Moved, MovedContents or Copied.
	How string `json:"how"`
	// Entries are the names MovedContents moved from From into To.
	Entries []string `json:"entries,omitempty"`
}

// How a path was kept.
const (
	// Moved: From was renamed to To.
	Moved = "moved"
	// MovedContents: From stays (a mount point, or a symlink's target) and
	// its entries were renamed into To.
	MovedContents = "moved-contents"
	// Copied: To is a copy; From stays in use.
	Copied = "copied"
)

// Path returns the journal's path for a root and operation.
func Path(root, operation string) string {
	return filepath.Join(dirIn(root), operation+"-state.json")
}

// BackupDir returns the folder, in the root, where this run keeps what it replaces.
func (j *Journal) BackupDir(root string) string {
	return filepath.Join(dirIn(root), "backup", j.RunID)
}

// DirIn is Dir's host path on a root; see dirIn.
func DirIn(root string) string { return dirIn(root) }

// dirIn is Dir's host path as the master sees it: a master whose /var (or
// /var/lib) is a symlink keeps the journal at the link's target inside the
// root. A path that cannot be resolved (a symlink loop) stays as written,
// where every later operation fails with the loop's error.
func dirIn(root string) string {
	p, err := (&rootfs.Root{Path: root}).Resolve(Dir)
	if err != nil {
		return filepath.Join(root, Dir)
	}
	return p
}

// Begin starts or resumes the run of an operation on a root:
//
//   - no journal yet: a new run with these parameters (written by its first
//     step that changes anything);
//   - a journal with the same parameters: that run resumes (resumed is true),
//     finished or not, so a re-run of a finished run changes nothing;
//   - a finished run with other parameters: a new run starts, and the old
//     journal moves to the old run's backup folder (not in a dry run);
//   - an unfinished run with other parameters: refused, saying how to go on.
func Begin(root, operation string, params map[string]string, now time.Time, dryRun bool) (j *Journal, resumed bool, err error) {
	j, err = Open(root, operation, now)
	if err != nil {
		return nil, false, err
	}
	switch {
	case !j.Exists():
		j.Params = params
		return j, false, nil
	case equalParams(j.Params, params):
		return j, true, nil
	case j.Finished == nil:
		return nil, false, fmt.Errorf("an unfinished %s (run %s, started with %s) is recorded in %s: re-run it with the same flags to resume it, "+
			"or move that file aside to start over", operation, j.RunID, describeParams(j.Params), j.File())
	}
	if !dryRun {
		if err := j.archive(root); err != nil {
			return nil, false, err
		}
	}
	// The new run gets a backup folder of its own.
	old := j.RunID
	j = fresh(root, j.path, operation, now, old)
	j.Params = params
	return j, false, nil
}

// archive moves a finished run's journal beside what that run kept.
func (j *Journal) archive(root string) error {
	dir := j.BackupDir(root)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Rename(j.path, filepath.Join(dir, filepath.Base(j.path))); err != nil {
		return fmt.Errorf("move the finished run's journal aside: %w", err)
	}
	return nil
}

func equalParams(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// describeParams lists the non-empty parameters, sorted: "name=a profile=b".
func describeParams(p map[string]string) string {
	var keys []string
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if p[k] != "" {
			parts = append(parts, k+"="+p[k])
		}
	}
	return strings.Join(parts, " ")
}

// Open loads the journal of an operation, or returns a fresh one (not yet
// written) when there is none or the previous one finished.
func Open(root, operation string, now time.Time) (*Journal, error) {
	p := Path(root, operation)
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fresh(root, p, operation, now, ""), nil
	case err != nil:
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("journal %s is damaged (%v): move it aside to start over", p, err)
	}
	j.path = p
	if err := j.check(); err != nil {
		return nil, fmt.Errorf("journal %s: %w: it was not written by etcd-rescue; move it aside to start over", p, err)
	}
	if j.Steps == nil {
		j.Steps = map[string]StepRecord{}
	}
	if j.Notes == nil {
		j.Notes = map[string]string{}
	}
	return &j, nil
}

// check validates what the journal names on the disk before any of it is
// used: the run ID names a folder, every kept path is clean and free of
// "..", and every kept entry is one name.
func (j *Journal) check() error {
	if err := rootfs.CheckName(j.RunID); err != nil {
		return fmt.Errorf("run ID: %w", err)
	}
	for _, k := range j.Kept {
		for _, p := range []string{k.From, k.To} {
			if err := rootfs.CheckPath(p); err != nil {
				return fmt.Errorf("kept path: %w", err)
			}
		}
		for _, e := range k.Entries {
			if err := rootfs.CheckName(e); err != nil {
				return fmt.Errorf("kept entry of %s: %w", k.From, err)
			}
		}
	}
	for _, p := range j.Created {
		if err := rootfs.CheckPath(p); err != nil {
			return fmt.Errorf("created path: %w", err)
		}
	}
	return nil
}

// CheckInRoot refuses a journal whose kept paths, or the host paths in the
// named notes, are not inside root: a run that moved data there would move
// it off the master. Operations call it once they know their root.
func (j *Journal) CheckInRoot(root string, notes ...string) error {
	r := &rootfs.Root{Path: filepath.Clean(root)}
	inRoot := func(p string) error {
		if _, err := r.Rel(p); err != nil || !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("journal %s names %q, which is not inside the root %s: it was not written by etcd-rescue for this root; move it aside to start over", j.path, p, root)
		}
		return nil
	}
	for _, k := range j.Kept {
		for _, p := range []string{k.From, k.To} {
			if err := inRoot(p); err != nil {
				return err
			}
		}
	}
	for _, p := range j.Created {
		if err := inRoot(p); err != nil {
			return err
		}
	}
	for _, n := range notes {
		if p := j.Notes[n]; p != "" {
			if err := inRoot(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// fresh starts a journal whose run ID (its backup folder's name) no
// earlier run used, nor taken: two runs in the same second get -2, -3….
func fresh(root, p, operation string, now time.Time, taken string) *Journal {
	j := &Journal{
		Operation: operation,
		RunID:     now.UTC().Format("20060102-150405"),
		Steps:     map[string]StepRecord{},
		Notes:     map[string]string{},
		path:      p,
	}
	base := j.RunID
	for n := 2; ; n++ {
		if _, err := os.Lstat(j.BackupDir(root)); errors.Is(err, fs.ErrNotExist) && j.RunID != taken {
			return j
		}
		j.RunID = fmt.Sprintf("%s-%d", base, n)
	}
}

// Exists reports whether the journal has ever been written.
func (j *Journal) Exists() bool {
	_, err := os.Stat(j.path)
	return err == nil
}

// File returns the journal's path.
func (j *Journal) File() string { return j.path }

// SetStep records a step's state and saves the journal.
func (j *Journal) SetStep(name, state string, err error) error {
	r := StepRecord{State: state, At: time.Now().UTC()}
	if err != nil {
		r.Error = err.Error()
	}
	j.Steps[name] = r
	return j.Save()
}

// StepDone reports whether the journal records the step as done.
func (j *Journal) StepDone(name string) bool { return j.Steps[name].State == "done" }

// Note records a value and saves the journal.
func (j *Journal) Note(key, value string) error {
	j.Notes[key] = value
	return j.Save()
}

// AddKept records a kept path and saves the journal. Recording the same
// move again (a resumed run) only adds the entries not yet recorded.
func (j *Journal) AddKept(k Kept) error {
	for i, have := range j.Kept {
		if have.From != k.From || have.To != k.To || have.How != k.How {
			continue
		}
		added := false
		for _, e := range k.Entries {
			if !slices.Contains(have.Entries, e) {
				j.Kept[i].Entries = append(j.Kept[i].Entries, e)
				added = true
			}
		}
		if !added {
			return nil
		}
		return j.Save()
	}
	j.Kept = append(j.Kept, k)
	return j.Save()
}

// AddCreated records paths the run is about to create and saves the
// journal once. Paths already recorded (a resumed run) are not added again.
func (j *Journal) AddCreated(paths ...string) error {
	added := false
	for _, p := range paths {
		if !slices.Contains(j.Created, p) {
			j.Created = append(j.Created, p)
			added = true
		}
	}
	if !added {
		return nil
	}
	return j.Save()
}

// IsCreated reports whether the run recorded path as created.
func (j *Journal) IsCreated(path string) bool { return slices.Contains(j.Created, path) }

// KeptAt returns the record of what was kept from a path, if any.
func (j *Journal) KeptAt(from string) (Kept, bool) {
	for _, k := range j.Kept {
		if k.From == from {
			return k, true
		}
	}
	return Kept{}, false
}

// Save writes the journal atomically, so a power loss leaves the old or
// the new journal.
func (j *Journal) Save() error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(j.path, append(b, '\n'), 0o600)
}

// Package journal keeps the state file of a recovery run in the target root
// (var/lib/etcd-rescue/state.json), so that a run interrupted by a crash or a
// power loss resumes where it stopped and ends in the same result.
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
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
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
	// Notes holds values a step computed that later steps or re-runs need
	// (the bump amount, the new cluster ID, intentions before a rename).
	Notes map[string]string `json:"notes,omitempty"`
	// Finished is set when the whole operation ended OK.
	Finished *time.Time `json:"finished,omitempty"`

	path string
}

// StepRecord is the state of one step.
type StepRecord struct {
	State string    `json:"state"` // started, done, skipped, failed
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// Kept is one file or directory moved or copied out of the way.
type Kept struct {
	From string `json:"from"`
	To   string `json:"to"`
	How  string `json:"how"` // "moved" or "copied"
}

// Path returns the journal's path for a root and operation.
func Path(root, operation string) string {
	return filepath.Join(root, Dir, operation+"-state.json")
}

// BackupDir returns the folder, in the root, where this run keeps what it replaces.
func (j *Journal) BackupDir(root string) string {
	return filepath.Join(root, Dir, "backup", j.RunID)
}

// Open loads the journal of an operation, or returns a fresh one (not yet
// written) when there is none or the previous one finished.
func Open(root, operation string, now time.Time) (*Journal, error) {
	p := Path(root, operation)
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fresh(root, p, operation, now), nil
	case err != nil:
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("journal %s is damaged (%v): move it aside to start over", p, err)
	}
	j.path = p
	if j.Steps == nil {
		j.Steps = map[string]StepRecord{}
	}
	if j.Notes == nil {
		j.Notes = map[string]string{}
	}
	return &j, nil
}

// fresh starts a journal whose run ID (its backup folder's name) no
// earlier run used: two runs in the same second get -2, -3….
func fresh(root, p, operation string, now time.Time) *Journal {
	j := &Journal{
		Operation: operation,
		RunID:     now.UTC().Format("20060102-150405"),
		Steps:     map[string]StepRecord{},
		Notes:     map[string]string{},
		path:      p,
	}
	base := j.RunID
	for n := 2; ; n++ {
		if _, err := os.Lstat(j.BackupDir(root)); errors.Is(err, fs.ErrNotExist) {
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
// pair twice (a resumed run) is a no-op.
func (j *Journal) AddKept(k Kept) error {
	for _, have := range j.Kept {
		if have == k {
			return nil
		}
	}
	j.Kept = append(j.Kept, k)
	return j.Save()
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

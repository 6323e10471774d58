package undo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// Operations whose runs can be undone: a restore, and an undo (which gives
// back the state the undo kept aside).
var undoable = []string{"restore", "undo"}

// maxJournal bounds a journal read back from the root.
const maxJournal = 16 << 20

// target is the run being undone, as its journal records it.
type target struct {
	j *journal.Journal
	// file is the journal's path as the master sees it: the operation's
	// own journal while it is the latest run, or the copy in the run's
	// backup folder once a later run archived it.
	file string
	// live is true when file is the operation's own journal
	// (var/lib/etcd-rescue/<op>-state.json), which the undo sets aside.
	live bool
}

// liveJournal is the operation's journal as the master sees it.
func liveJournal(op string) string { return "/" + journal.Dir + "/" + op + "-state.json" }

// archivedJournal is where journal.Begin moves a finished run's journal.
func archivedJournal(op, run string) string {
	return "/" + journal.Dir + "/backup/" + run + "/" + op + "-state.json"
}

// readJournal reads a journal file of the root; nil when there is none.
func readJournal(root *rootfs.Root, rel string) (*journal.Journal, error) {
	b, err := root.ReadFile(rel, maxJournal)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j journal.Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("journal %s is damaged (%v): undo that run by hand from what its backup folder holds", rel, err)
	}
	return &j, nil
}

// findRun finds the journal of run id, live or archived.
func findRun(root *rootfs.Root, id string) (*target, error) {
	if err := rootfs.CheckName(id); err != nil {
		return nil, fmt.Errorf("run %q: %v: give a run ID as etcd-rescue printed it (the name of a folder in /%s/backup)", id, err, journal.Dir)
	}
	for _, op := range undoable {
		j, err := readJournal(root, liveJournal(op))
		if err != nil {
			return nil, err
		}
		if j != nil && j.RunID == id {
			return &target{j: j, file: liveJournal(op), live: true}, nil
		}
		if j, err = readJournal(root, archivedJournal(op, id)); err != nil {
			return nil, err
		}
		if j != nil {
			if j.RunID != id {
				return nil, fmt.Errorf("%s records run %q, not %q: it was not written by etcd-rescue for that run; undo by hand", archivedJournal(op, id), j.RunID, id)
			}
			return &target{j: j, file: archivedJournal(op, id)}, nil
		}
	}
	return nil, fmt.Errorf("no restore or undo run %s is recorded in /%s (neither its journal nor backup/%s/): list the runs with ls /%s/backup",
		id, journal.Dir, id, journal.Dir)
}

// defaultRun is the run an undo without --run undoes: the one an
// unfinished undo was started on, else the latest restore run, finished or
// not.
func defaultRun(root *rootfs.Root) (string, error) {
	u, err := readJournal(root, liveJournal("undo"))
	if err != nil {
		return "", err
	}
	if u != nil && u.Finished == nil && u.Params["run"] != "" {
		return u.Params["run"], nil
	}
	r, err := readJournal(root, liveJournal("restore"))
	if err != nil {
		return "", err
	}
	if r != nil {
		return r.RunID, nil
	}
	// The latest archived restore: run IDs are UTC timestamps.
	dir, err := root.Resolve(journal.Dir + "/backup")
	if err != nil {
		return "", err
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*", "restore-state.json"))
	var runs []string
	for _, m := range matches {
		runs = append(runs, filepath.Base(filepath.Dir(m)))
	}
	if len(runs) == 0 {
		return "", fmt.Errorf("no restore run is recorded in /%s: there is nothing to undo", journal.Dir)
	}
	sort.Slice(runs, func(a, b int) bool { return runOrder(runs[a]) < runOrder(runs[b]) })
	return runs[len(runs)-1], nil
}

// runOrder sorts run IDs by time, and "…-10" after "…-9" within a second.
func runOrder(id string) string {
	if len(id) < 15 {
		return id
	}
	base, n := id[:15], strings.TrimPrefix(id[15:], "-")
	if t, err := time.Parse("20060102-150405", base); err == nil {
		return fmt.Sprintf("%s-%08s", t.UTC().Format("20060102150405"), n)
	}
	return id
}

// item is one thing the target run kept aside: where it lived and where
// the run put it.
type item struct {
	// Live is the path as the master sees it ("/var/lib/etcd").
	Live string
	// LiveHost is Live on this host: for Contents, the folder (symlinks
	// followed); otherwise the entry itself.
	LiveHost string
	// Kept is where the run put it, on this host.
	Kept string
	// Contents: the run moved the folder's Entries, not the folder.
	Contents bool
	Entries  []string
	// Copied: Live stayed in use after the run kept its copy.
	Copied bool
	// Created: the run wrote Live where nothing was; the undo only moves
	// it aside (Kept is empty).
	Created bool
	// Covered: Live is inside another item's Live (or the same), so it
	// moves aside with that one, and is put back by it when that one
	// holds it.
	Covered bool
	order   int
}

// items validates the target's records and turns them into items. Every
// recorded path must lie inside the root and be clean; each kept path must
// be in the tool's own folders (a run's backup folder, or a kept folder
// inside a data dir).
func items(root *rootfs.Root, t *target) ([]item, error) {
	j := t.j
	if err := rootfs.CheckName(j.RunID); err != nil {
		return nil, fmt.Errorf("journal %s: run ID: %v: it was not written by etcd-rescue; undo by hand", t.file, err)
	}
	recorded := recordedRoot(j)
	var out []item
	for i, k := range j.Kept {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("journal %s, kept entry %d (%s -> %s): %s: it was not written by etcd-rescue; undo by hand",
				t.file, i+1, k.From, k.To, fmt.Sprintf(format, args...))
		}
		live, err := relPath(root, recorded, k.From)
		if err != nil {
			return nil, bad("%v", err)
		}
		kept, err := relPath(root, recorded, k.To)
		if err != nil {
			return nil, bad("%v", err)
		}
		if inside(live, stoppedManifests) {
			// An online restore copied the manifest while it was stopped;
			// it lives in the kubelet's folder, where the copy's path in
			// the backup folder says.
			if live, err = mirrored(kept); err != nil {
				return nil, bad("%v", err)
			}
		}
		if !ownFolder(kept, j.RunID) {
			return nil, bad("%s is neither in /%s/backup nor the run's %s%s folder", kept, journal.Dir, keep.KeptPrefix, j.RunID)
		}
		if inside(live, "/"+journal.Dir+"/backup") {
			return nil, bad("%s is inside the backup folders", live)
		}
		for _, e := range k.Entries {
			if err := rootfs.CheckName(e); err != nil {
				return nil, bad("entry: %v", err)
			}
		}
		it := item{Live: live, Entries: k.Entries, order: i}
		switch {
		case k.How == journal.MovedContents, k.How == journal.Moved && len(k.Entries) > 0:
			// Moved with entries: a folder that could not be renamed had
			// its entries moved (keep.Keeper.Move).
			it.Contents = true
		case k.How == journal.Moved:
		case k.How == journal.Copied:
			it.Copied = true
		default:
			return nil, bad("unknown way %q", k.How)
		}
		if it.Contents {
			it.LiveHost, err = root.Resolve(live)
		} else {
			it.LiveHost, err = root.ResolveParent(live)
		}
		if err != nil {
			return nil, bad("%v", err)
		}
		if it.Kept, err = root.ResolveParent(kept); err != nil {
			return nil, bad("%v", err)
		}
		out = append(out, it)
	}
	created, err := createdItems(root, recorded, t, len(out))
	if err != nil {
		return nil, err
	}
	out = append(out, created...)
	if it, ok, err := emptyDataDir(root, recorded, t, out); err != nil {
		return nil, err
	} else if ok {
		out = append(out, it)
	}
	for i := range out {
		for k := range out {
			if k == i {
				continue
			}
			same := out[k].Live == out[i].Live && (k < i || out[i].Created)
			if same || inside(out[i].Live, out[k].Live) {
				out[i].Covered = true
			}
		}
	}
	return out, nil
}

// recordedRoot is where the root was mounted when the run recorded its host
// paths: what comes before /var/lib/etcd-rescue/backup/<run>/ in a kept
// path. A root restored online ("/") may be undone from the rescue image
// (/sysroot), or the other way round. "" when no kept path says.
func recordedRoot(j *journal.Journal) string {
	marker := "/" + journal.Dir + "/backup/"
	paths := []string{j.Notes["keptDataDir"]}
	for _, k := range j.Kept {
		paths = append(paths, k.To)
	}
	for _, p := range paths {
		if i := strings.Index(p, marker); i >= 0 && filepath.IsAbs(p) {
			if i == 0 {
				return "/"
			}
			return p[:i]
		}
	}
	return ""
}

// stoppedManifests is where an online restore keeps the static pod
// manifests while their pods are stopped.
const stoppedManifests = "/" + journal.Dir + "/stopped-manifests"

// mirrored is the path on the master that a path in a run's backup folder
// (/var/lib/etcd-rescue/backup/<run>/<path>) keeps.
func mirrored(kept string) (string, error) {
	rest, ok := strings.CutPrefix(kept, "/"+journal.Dir+"/backup/")
	_, p, found := strings.Cut(rest, "/")
	if !ok || !found {
		return "", fmt.Errorf("%s is not in a run's backup folder", kept)
	}
	return "/" + p, rootfs.CheckPath("/" + p)
}

// relPath turns a path the journal recorded (a host path under the root as
// it was mounted then, recorded, or now, or a path as the master sees it)
// into a checked path as the master sees it.
func relPath(root *rootfs.Root, recorded, p string) (string, error) {
	if err := rootfs.CheckPath(p); err != nil {
		return "", err
	}
	if !filepath.IsAbs(p) {
		return "/" + p, nil
	}
	switch {
	case recorded == "/":
		return p, nil
	case recorded != "" && inside(p, recorded):
		return strings.TrimPrefix(p, recorded), nil
	}
	rel, err := root.Rel(p)
	if err != nil {
		return "", fmt.Errorf("%s is outside the root %s (was the root mounted elsewhere when the run was made? mount it there again)", p, root.Path)
	}
	if err := rootfs.CheckPath(rel); err != nil {
		return "", err
	}
	return rel, nil
}

// ownFolder reports whether a kept path is where this tool keeps things: a
// run's backup folder, or the run's kept folder inside a data dir on a
// filesystem of its own.
func ownFolder(rel, run string) bool {
	return inside(rel, "/"+journal.Dir+"/backup") || filepath.Base(rel) == keep.KeptPrefix+run
}

// inside reports whether p is strictly below dir.
func inside(p, dir string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// emptyDataDir is, for a restore that found no old data dir (so kept none),
// the data dir as an item with nothing to put back: the undo still keeps
// the restored member aside, so the master is left without one, as before.
func emptyDataDir(root *rootfs.Root, recorded string, t *target, have []item) (item, bool, error) {
	kept := t.j.Notes["keptDataDir"]
	if t.j.Operation != "restore" || kept == "" || len(have) == 0 {
		return item{}, false, nil
	}
	for _, it := range have {
		if it.Contents {
			return item{}, false, nil
		}
	}
	bad := func(err error) error {
		return fmt.Errorf("journal %s, note keptDataDir %s: %v: it was not written by etcd-rescue; undo by hand", t.file, kept, err)
	}
	rel, err := relPath(root, recorded, kept)
	if err != nil {
		return item{}, false, bad(err)
	}
	var live string
	switch {
	case inside(rel, "/"+journal.Dir+"/backup/"+t.j.RunID):
		live, err = mirrored(rel)
	case filepath.Base(rel) == keep.KeptPrefix+t.j.RunID:
		live = filepath.Dir(rel)
		err = rootfs.CheckPath(live)
	default:
		err = fmt.Errorf("%s is neither in the run's backup folder nor its %s%s folder", rel, keep.KeptPrefix, t.j.RunID)
	}
	if err != nil {
		return item{}, false, bad(err)
	}
	it := item{Live: live, Contents: true, order: len(have)}
	if it.LiveHost, err = root.Resolve(live); err != nil {
		return item{}, false, bad(err)
	}
	if it.Kept, err = root.ResolveParent(rel); err != nil {
		return item{}, false, bad(err)
	}
	return it, true, nil
}

// createdItems are the files the run recorded as created (the signer's
// unit and binary, a new certificate): the undo moves each aside, and
// has nothing to put back in its place.
func createdItems(root *rootfs.Root, recorded string, t *target, order int) ([]item, error) {
	var out []item
	for i, p := range t.j.Created {
		bad := func(err error) error {
			return fmt.Errorf("journal %s, created entry %d (%s): %v: it was not written by etcd-rescue; undo by hand", t.file, i+1, p, err)
		}
		live, err := relPath(root, recorded, p)
		if err != nil {
			return nil, bad(err)
		}
		if inside(live, "/"+journal.Dir+"/backup") {
			return nil, bad(fmt.Errorf("%s is inside the backup folders", live))
		}
		it := item{Live: live, Created: true, order: order + i}
		if it.LiveHost, err = root.ResolveParent(live); err != nil {
			return nil, bad(err)
		}
		out = append(out, it)
	}
	return out, nil
}

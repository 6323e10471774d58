package drill

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// surveyMasters reads the three old masters' data dirs off their disks
// after the power loss, rots master-2's WAL in its copy, and surveys them
// with the backup, as the operator does before choosing a source: master-0
// (fresh: in every quorum since master-1 died) must rank first and be
// recommended, master-1 (it died halfway through the writes after the
// backup) second, the backup third, and master-2 last with its damage
// named, not fatal. The report records what the backup would have lost.
func (r *run) surveyMasters() error {
	prof, err := profile.Get(r.o.Profile)
	if err != nil {
		return err
	}
	var dirs []string
	for _, m := range r.old {
		// Powered off hard: replay the ext4 journal, as the next mount would.
		if out, err := exec.Command("e2fsck", "-fy", m.disk).CombinedOutput(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
				return fmt.Errorf("e2fsck of master-%d's disk: %v: %s", m.idx, err, out)
			}
		}
		dst := filepath.Join(r.dir, fmt.Sprintf("survey-master-%d", m.idx))
		if err := os.MkdirAll(dst, 0o700); err != nil {
			return err
		}
		if out, err := exec.Command("debugfs", "-R", "rdump /"+prof.DataDir+" "+dst, m.disk).CombinedOutput(); err != nil {
			return fmt.Errorf("debugfs rdump of master-%d's data dir: %v: %s", m.idx, err, out)
		}
		dirs = append(dirs, filepath.Join(dst, filepath.Base(prof.DataDir)))
	}
	if err := rotWAL(dirs[2]); err != nil {
		return err
	}
	backupDir := filepath.Join(r.dir, "backup-volume", "etcd")
	var log bytes.Buffer
	rep, err := survey.Run(survey.Options{DataDirs: dirs, Backups: []string{backupDir}, Log: &log})
	if err != nil {
		return err
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	r.o.Log("survey:\n%s\n%s", log.String(), table.String())

	var order []string
	for _, s := range rep.Sources {
		if s.Kind == survey.Backup {
			order = append(order, "backup") // named by its snapshot file
			continue
		}
		order = append(order, s.Path)
	}
	if want := []string{dirs[0], dirs[1], "backup", dirs[2]}; strings.Join(order, " ") != strings.Join(want, " ") {
		return fmt.Errorf("survey ranking %v, want master-0, master-1, the backup, master-2 (damaged)", order)
	}
	fresh, stale, bk, damaged := rep.Sources[0], rep.Sources[1], rep.Sources[2], rep.Sources[3]
	if !fresh.Recommended || rep.PlanSource != "survivor-data" {
		return fmt.Errorf("survey recommends %s (%s), want master-0's data dir", rep.RecommendedPath, rep.PlanSource)
	}
	if fresh.RevisionAtMost < r.rep.MaxRevisionBeforeLoss {
		return fmt.Errorf("master-0's WAL reaches revision %d at most; the cluster acknowledged %d", fresh.RevisionAtMost, r.rep.MaxRevisionBeforeLoss)
	}
	// One revision per key written after the backup (putEach); the
	// survey's count is a lower bound by the writes whose outcome only
	// applying master-0's WAL tells.
	lost := r.rep.MaxRevisionBeforeLoss - r.revAtBackup
	uncertain := fresh.RevisionAtMost - fresh.RevisionAtLeast
	if bk.LostRevisions > lost || bk.LostRevisions < lost-uncertain || bk.LostRevisions == 0 && lost > uncertain {
		return fmt.Errorf("the backup loses %d revisions by the survey; the cluster wrote %d after it (%d uncertain in master-0's WAL)", bk.LostRevisions, lost, uncertain)
	}
	if stale.LostRevisions > bk.LostRevisions || stale.LostEntries >= bk.LostEntries {
		return fmt.Errorf("master-1 loses %d revisions (%d entries), the backup %d (%d): want master-1 to lose less", stale.LostRevisions, stale.LostEntries, bk.LostRevisions, bk.LostEntries)
	}
	if damaged.Usable() || !strings.Contains(damaged.Error, "WAL") {
		return fmt.Errorf("master-2's rotten WAL not reported: %q", damaged.Error)
	}
	r.rep.SurveyRanking = []string{"master-0", "master-1", "backup", "master-2 (damaged WAL)"}
	r.rep.BackupWouldLose, r.rep.StaleWouldLose = bk.LostRevisions, stale.LostRevisions
	r.rep.SurveyExact = bk.LostExact
	return nil
}

// rotWAL flips a byte inside a record in the middle of the written part of
// a data dir's newest WAL segment: a bit rot etcd refuses to start from.
func rotWAL(dataDir string) error {
	segs, _ := filepath.Glob(filepath.Join(dataDir, "member", "wal", "*.wal"))
	sort.Strings(segs)
	if len(segs) == 0 {
		return fmt.Errorf("no WAL segment in %s", dataDir)
	}
	path := segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Each record: an 8-byte frame (length, padding in the top byte),
	// then the record; a zero frame ends the written part.
	var frames []int64
	for off := int64(0); off+8 <= int64(len(b)); {
		l := binary.LittleEndian.Uint64(b[off:])
		if l == 0 {
			break
		}
		frames = append(frames, off)
		off += 8 + int64(l&(1<<56-1))
		if l>>63 == 1 {
			off += int64(l>>56) & 0x7
		}
	}
	if len(frames) < 4 {
		return fmt.Errorf("%s holds %d records: too few to rot", path, len(frames))
	}
	mid := frames[len(frames)/2]
	b[mid+8+int64(binary.LittleEndian.Uint64(b[mid:])&(1<<56-1))/2] ^= 0xff
	return os.WriteFile(path, b, 0o600)
}

// putEach writes keys [from, to) one put each, as most clients write, so
// the survey can count each acknowledged write as a revision; it returns
// the highest revision.
func putEach(ctx context.Context, cli *clientv3.Client, from, to int) (int64, error) {
	var rev int64
	for i := from; i < to; i++ {
		k, v := Key(i)
		var resp *clientv3.PutResponse
		var err error
		// A leader change on a loaded host fails a request; the same put
		// again is harmless.
		for attempt := 0; attempt < 5; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err = cli.Put(pctx, k, v)
			cancel()
			if err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			return rev, fmt.Errorf("put %s: %w", k, err)
		}
		rev = resp.Header.Revision
	}
	return rev, nil
}

package join

import (
	"context"
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// old lists what is in the way: etcd state this join did not write. The
// data dir's contents are moved (the folder stays: it may be a mount
// point); the environment file is copied, as only its recover block changes.
func (jn *joiner) old() (move []string, dataDir bool, copy []string) {
	var files []string
	files = append(files, jn.prof.Manifest)
	for _, k := range jn.kinds {
		c, key := jn.certRel(k)
		files = append(files, c, key)
	}
	for _, rel := range files {
		if exists(jn.abs(rel)) && !jn.ours(rel) {
			move = append(move, rel)
		}
	}
	dataDir = jn.j.Notes["dir:"+jn.prof.DataDir] == "" && len(keep.Entries(jn.abs(jn.prof.DataDir))) > 0
	if env := jn.prof.EnvFile; env != "" && exists(jn.abs(env)) && !jn.ours(env) {
		copy = append(copy, env)
	}
	return move, dataDir, copy
}

func (jn *joiner) keeper() *keep.Keeper {
	return &keep.Keeper{Root: jn.root, Journal: jn.j, Out: jn.out}
}

func (jn *joiner) keepStep() steps.Step {
	return steps.Step{
		Name: "keep-old-state",
		Describe: func() string {
			move, dataDir, cp := jn.old()
			if dataDir {
				move = append(move, jn.prof.DataDir+"/*")
			}
			return fmt.Sprintf("move %s and copy %s to %s", orNone(move), orNone(cp), jn.j.BackupDir(jn.root))
		},
		Check: func(context.Context) (steps.State, error) {
			move, dataDir, cp := jn.old()
			if len(move)+len(cp) == 0 && !dataDir {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			if err := jn.recordDataDir(); err != nil {
				return err
			}
			k := jn.keeper()
			move, dataDir, cp := jn.old()
			for _, rel := range cp {
				if err := k.Copy(jn.abs(rel), k.Backup(rel)); err != nil {
					return err
				}
			}
			for _, rel := range move {
				if err := k.Move(jn.abs(rel), k.Backup(rel)); err != nil {
					return err
				}
			}
			if dataDir {
				// Checked again at the move: an etcd may have started since.
				if err := jn.checkNotRunning(jn.prof.DataDir); err != nil {
					return err
				}
				if _, err := k.MoveContents(jn.abs(jn.prof.DataDir), jn.prof.DataDir); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

// kept returns the path a file was kept at by this run, or "".
func (jn *joiner) kept(rel string) string { return jn.keeper().Where(jn.abs(rel)) }

package roles

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

func init() {
	boot.Register(ignition.RoleVerify, Verify, boot.NeedsBackup())
}

// Verify is the verify role: it finds the newest complete backup on the
// backup volume, surveys it against the master's data dir (when the
// master's root is attached, mounted read-only) and checks it (snapshot
// hash and integrity, resources tarball). The survey is printed as a table
// and a SURVEY-JSON line, and written beside the backup; that file is the
// only change to any volume. It ends with VERIFY-OK or VERIFY-FAILED.
func Verify(ctx context.Context, env *boot.Env) error {
	var set *backup.Set
	var rep *backup.Report
	list := []steps.Step{
		{
			Name:     "find-backup",
			ReadOnly: true,
			Describe: func() string { return "look for the newest complete backup in " + env.Backup },
			Check:    func(context.Context) (steps.State, error) { return steps.ToDo, nil },
			Run: func(context.Context) error {
				s, err := backup.Find(env.Backup)
				if err != nil {
					return err
				}
				set = s
				return nil
			},
		},
	}
	list = append(list, surveySteps(env, time.Now)...)
	list = append(list, steps.Step{
		Name:     "verify-backup",
		ReadOnly: true,
		Describe: func() string { return "check the snapshot and the static resources of " + set.Snapshot },
		Check:    func(context.Context) (steps.State, error) { return steps.ToDo, nil },
		Run: func(ctx context.Context) error {
			r, err := backup.VerifyContext(ctx, set, backup.Options{SkipHashCheck: env.Plan.Backup.SkipHashCheck})
			if err != nil {
				return err
			}
			rep = r
			rep.Print(env.Console)
			return nil
		},
	})
	// A single-file backup's extracted snapshot is scratch: removed on
	// every way out.
	defer func() { rep.Close() }()
	r := steps.Runner{Operation: "verify", Out: env.Console, DryRun: env.DryRun}
	return r.Run(ctx, list, func() string {
		if rep == nil || rep.Snapshot == nil {
			return ""
		}
		return fmt.Sprintf("%s revision %d, %d keys", filepath.Base(set.Snapshot), rep.Snapshot.Status.Revision, rep.Snapshot.Status.TotalKey)
	})
}

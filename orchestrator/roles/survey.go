package roles

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// SurveyJSONPrefix starts the console line that carries the verify role's
// survey as one line of JSON (the report of `etcd-rescue survey --json`),
// for whoever reads the console by machine.
const SurveyJSONPrefix = "SURVEY-JSON "

// surveySteps survey the master's data dir (when its root is attached) and
// the newest backup, print the ranking on the console as a table and as
// one SURVEY-JSON line, and write the report beside the backup as
// survey-<member>-<time>.json. A damaged data dir or WAL is a row of the
// survey, not a failure; a backup volume that cannot be written (read-only,
// or the write failed) is said on the console and leaves the survey on the
// console only.
func surveySteps(env *boot.Env, now func() time.Time) []steps.Step {
	var (
		report *survey.Report
		at     time.Time
	)
	return []steps.Step{
		{
			Name:     "survey",
			ReadOnly: true,
			Describe: func() string {
				what := "the backup in " + env.Backup
				if env.Root != "" {
					what = "the master's data dir and " + what
				}
				return "rank " + what + " by how much of the cluster's history each keeps"
			},
			Check: func(context.Context) (steps.State, error) { return steps.ToDo, nil },
			Run: func(context.Context) error {
				at = now().UTC()
				r, err := runSurvey(env)
				if err != nil {
					return err
				}
				report = r
				r.WriteTable(steps.Indent(env.Console))
				line, err := json.Marshal(r)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Console, "%s%s\n", SurveyJSONPrefix, line)
				return nil
			},
		},
		{
			Name: "save-survey",
			Describe: func() string {
				return fmt.Sprintf("write %s beside the backup in %s (its volume mounted read-write for this write only)", surveyFile(env, at), env.Backup)
			},
			Check: func(context.Context) (steps.State, error) { return steps.ToDo, nil },
			Run: func(context.Context) error {
				b, err := json.MarshalIndent(report, "", "  ")
				if err != nil {
					return err
				}
				// The survey is on the console already: a volume that
				// cannot take the file is reported, and verify goes on.
				p, err := env.WriteBesideBackup(surveyFile(env, at), append(b, '\n'))
				if err != nil {
					fmt.Fprintf(env.Console, "    survey not written beside the backup: %v; the SURVEY-JSON line above is the survey\n", err)
					return nil
				}
				fmt.Fprintf(env.Console, "    survey written to %s\n", p)
				return nil
			},
		},
	}
}

// runSurvey surveys the master's data dir, found from its etcd manifest on
// the mounted root, and the newest backup. Data dir paths (its WAL and
// backend included) are reported as the master sees them.
func runSurvey(env *boot.Env) (*survey.Report, error) {
	o := survey.Options{Backups: []string{env.Backup}, Log: steps.Indent(env.Console)}
	// Lines on the serial console, which is no terminal.
	o.Progress = progress.Options{Mode: progress.ModeFor(o.Log, false)}
	shown := map[string]string{} // host path in this image -> the master's path
	if env.Root == "" {
		fmt.Fprintln(env.Console, "    no master root attached: the survey covers the backup only")
	} else {
		prof, err := profileOf(env.Plan)
		if err != nil {
			return nil, err
		}
		dir, rel, why, err := survey.MasterDataDir(env.Root, prof, env.Member.Host)
		if err != nil {
			fmt.Fprintf(env.Console, "    the master's data dir cannot be found: %v; the survey covers the backup only\n", err)
		} else {
			fmt.Fprintf(env.Console, "    data dir: /%s (%s)\n", rel, why)
			o.DataDirs = append(o.DataDirs, dir)
			shown[dir] = "/" + rel
		}
	}
	r, err := survey.Run(o)
	if err != nil {
		return nil, err
	}
	for _, s := range r.Sources {
		p, ok := shown[s.Path]
		if !ok {
			continue
		}
		dir := s.Path
		under := func(f string) string { return filepath.Join(p, strings.TrimPrefix(f, dir)) }
		s.Path = p
		if s.WAL != nil {
			s.WAL.Dir = under(s.WAL.Dir)
		}
		if s.Backend != nil {
			s.Backend.Path = under(s.Backend.Path)
		}
	}
	if r.Recommended != nil {
		r.RecommendedPath = r.Recommended.Path
	}
	return r, nil
}

// surveyFile is the survey's file name: survey-<member>-<time>.json, the
// time in the backups' own layout (UTC).
func surveyFile(env *boot.Env, at time.Time) string {
	name := "survey-"
	if env.Member.Name != "" {
		name += env.Member.Name + "-"
	}
	return name + at.Format(backup.TimestampLayout) + ".json"
}

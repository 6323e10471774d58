package roles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// SignerTokensFile is the Ignition file holding the signer's token store
// (hashes only, as `etcd-rescue signer tokens --store` writes it). When the
// restore config carries it, the restore installs it for the signer, so the
// clear tokens the operator generated beforehand are the ones new masters
// use. Without it the signer generates tokens at its first start and writes
// them on the survivor (var/lib/etcd-rescue/signer/tokens.txt).
const SignerTokensFile = ignition.Dir + "/signer-tokens.json"

func init() {
	boot.Register(ignition.RoleRestore, Restore, boot.WritableRoot(), boot.NeedsBackup())
}

// Restore is the restore role of the rescue image. On the survivor's root
// it restores the backup (or, with the plan's source: survivor-data, the
// survivor's own data dir) as a one-member cluster (the restore's steps for
// the plan's survivor), then installs the temporary recovery service: the
// etcd-rescue binary, the plan, the token store when the config carries
// one, and the signer's systemd unit. Both parts are one journaled list of
// steps; it ends with RESTORE-OK only when all succeeded, or
// RESTORE-FAILED: reason.
func Restore(ctx context.Context, env *boot.Env) error {
	p := env.Plan
	name := env.Role.Member
	if name == "" {
		name = p.Survivor
	}
	m, ok := p.Member(name)
	if !ok {
		err := fmt.Errorf("member %q is not in the plan", name)
		fmt.Fprintf(env.Console, "RESTORE-FAILED: %v\n", err)
		return err
	}
	prof, err := profileOf(p)
	if err != nil {
		fmt.Fprintf(env.Console, "RESTORE-FAILED: %v\n", err)
		return err
	}
	backupDir := env.Backup
	if p.Source == plan.SourceSurvivorData {
		backupDir = "" // a backup volume found as well is not used
	}
	r, err := restore.Prepare(restore.Options{
		Root:          env.Root,
		BackupDir:     backupDir,
		Source:        p.Source,
		Member:        m,
		Profile:       prof,
		SkipHashCheck: p.Backup.SkipHashCheck,
		EtcdVersion:   p.EtcdVersion,
		DryRun:        env.DryRun,
		Out:           env.Console,
		Progress:      progress.Lines,
	})
	if err != nil {
		return err // RESTORE-FAILED was printed
	}
	defer r.Close()
	return r.Execute(ctx, installSteps(env, r.Keeper()), "recovery service installed")
}

// profileOf is the plan's master layout; nil (detect it) when it names none.
func profileOf(p *plan.Plan) (*profile.Profile, error) {
	if p.Profile == "" {
		return nil, nil
	}
	return profile.Get(p.Profile)
}

// installSteps put the recovery service on the restored root, so that it
// runs when the survivor boots its own OS again. Each file is written
// through the restore's keeper: one already there (an older binary or
// plan) is kept aside, a new one is recorded as created, so that
// `etcd-rescue undo` takes the service away and puts the old files back.
func installSteps(env *boot.Env, k *keep.Keeper) []steps.Step {
	root := env.Root
	// Resolved as the master sees them (a symlinked /usr/local or /var).
	binDst := profile.Abs(root, signer.DefaultBinary)
	planDst := profile.Abs(root, plan.DefaultPath)
	tokDst := profile.Abs(root, filepath.Join(signer.StateDir, "tokens.json"))
	planBytes := env.Files[ignition.PlanPath].Data
	tokens, haveTokens := env.Files[SignerTokensFile]

	fileStep := func(name, dst string, data func() ([]byte, error), mode os.FileMode, what string) steps.Step {
		return steps.Step{
			Name:     name,
			Describe: func() string { return what + " to " + dst },
			Check: func(context.Context) (steps.State, error) {
				want, err := data()
				if err != nil {
					return steps.ToDo, err
				}
				if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, want) {
					return steps.Done, nil
				}
				return steps.ToDo, nil
			},
			Run: func(context.Context) error {
				want, err := data()
				if err != nil {
					return err
				}
				return k.Replace(dst, want, mode)
			},
		}
	}
	list := []steps.Step{
		fileStep("install-binary", binDst, selfBinary, 0o755, "copy this etcd-rescue binary (the signer runs it)"),
		fileStep("install-plan", planDst, func() ([]byte, error) {
			if len(planBytes) == 0 {
				return nil, fmt.Errorf("the ignition config carries no %s to give the signer", ignition.PlanPath)
			}
			return planBytes, nil
		}, 0o644, "write the recovery plan"),
	}
	if haveTokens {
		list = append(list, fileStep("install-tokens", tokDst, func() ([]byte, error) { return tokens.Data, nil }, 0o600,
			"write the signer's token store (hashes of the new masters' tokens)"))
	}
	list = append(list, steps.Step{
		Name: "install-signer",
		Describe: func() string {
			return "install the signer's systemd unit into " + root + " (it removes itself at full membership)"
		},
		Check: func(context.Context) (steps.State, error) {
			files, err := signer.Manifest(signer.InstallOptions{})
			if err != nil {
				return steps.ToDo, err
			}
			for _, f := range files {
				p := profile.Abs(root, filepath.Dir(f.Path))
				p = filepath.Join(p, filepath.Base(f.Path))
				if f.Link != "" {
					if l, err := os.Readlink(p); err != nil || l != f.Link {
						return steps.ToDo, nil
					}
					continue
				}
				if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, f.Content) {
					return steps.ToDo, nil
				}
			}
			return steps.Done, nil
		},
		Run: func(context.Context) error {
			_, err := signer.Install(root, signer.InstallOptions{BeforeWrite: k.BeforeWrite})
			return err
		},
	})
	return list
}

// selfBinary reads the running etcd-rescue binary.
func selfBinary() ([]byte, error) {
	p, err := os.Executable()
	if err != nil {
		p = "/proc/self/exe"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read the running etcd-rescue binary to install it: %w", err)
	}
	if len(b) == 0 {
		return nil, errors.New("the running etcd-rescue binary reads as empty")
	}
	return b, nil
}

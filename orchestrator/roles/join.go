package roles

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/join"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

func init() {
	boot.Register(ignition.RoleJoin, Join, boot.WritableRoot())
}

// Join is the join role of the rescue image: on the new master's root disk
// it keeps the old etcd state aside, gets the certificates, has the member
// added and writes the etcd configuration. It does not wait: etcd starts
// when the master boots its own OS, and the signer promotes it then.
func Join(ctx context.Context, env *boot.Env) error {
	o := join.Options{
		Root:   env.Root,
		Plan:   env.Plan,
		Member: plan.Member{Name: env.Role.Member},
		Token:  strings.TrimSpace(string(env.Token)),
		DryRun: env.DryRun,
		NoWait: true,
		Out:    env.Console,
	}
	// How to recognize the etcd CA when the master's root has no CA
	// certificate yet: its pin ("sha256:<hex>", as the signer prints it),
	// or the certificate itself.
	if f, ok := env.Files[ignition.CAPinPath]; ok {
		o.CAHash = strings.TrimSpace(string(f.Data))
	} else if f, ok := env.Files[ignition.CACertPath]; ok {
		// The rescue image's own filesystem is scratch space.
		p := filepath.Join(os.TempDir(), "etcd-rescue-etcd-ca.crt")
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
		o.CACert = p
	}
	return join.Run(ctx, o)
}

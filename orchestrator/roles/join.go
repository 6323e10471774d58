package join

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
)

// Files a join role may find in the Ignition config besides the plan and
// the token: how to recognize the etcd CA when the master's root has no CA
// certificate yet.
const (
	// RoleCAFile is the etcd CA certificate (PEM).
	RoleCAFile = ignition.CACertPath
	// RoleCAHashFile is the CA's pin ("sha256:<hex>", as the signer prints it).
	RoleCAHashFile = ignition.CAPinPath
)

func init() {
	boot.Register(ignition.RoleJoin, Role, boot.WritableRoot())
}

// Role is the join role of the rescue image: on the new master's root disk
// it keeps the old etcd state aside, gets the certificates, has the member
// added and writes the etcd configuration. It does not wait: etcd starts
// when the master boots its own OS, and the signer promotes it then.
func Role(ctx context.Context, env *boot.Env) error {
	o := Options{
		Root:   env.Root,
		Plan:   env.Plan,
		Name:   env.Role.Member,
		Token:  strings.TrimSpace(string(env.Token)),
		DryRun: env.DryRun,
		NoWait: true,
		Out:    env.Console,
	}
	if f, ok := env.Files[RoleCAHashFile]; ok {
		o.CAHash = strings.TrimSpace(string(f.Data))
	} else if f, ok := env.Files[RoleCAFile]; ok {
		// The rescue image's own filesystem is scratch space.
		p := filepath.Join(os.TempDir(), "etcd-rescue-etcd-ca.crt")
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
		o.CACert = p
	}
	return Run(ctx, o)
}

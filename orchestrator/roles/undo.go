package roles

import (
	"context"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/undo"
)

func init() {
	boot.Register(ignition.RoleUndo, Undo, boot.WritableRoot())
}

// Undo is the undo role: on the master's root, mounted read-write, it does
// what `etcd-rescue undo` does on a host. It puts back what the latest
// restore run kept aside and keeps the restored state aside in turn, or
// resumes an undo a crash or a power loss interrupted. It ends with
// UNDO-OK or UNDO-FAILED (undo.Run prints them).
func Undo(ctx context.Context, env *boot.Env) error {
	return undo.Run(ctx, undo.Options{Root: env.Root, DryRun: env.DryRun, Out: env.Console})
}

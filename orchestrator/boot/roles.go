package boot

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// Env is what a role gets from the boot: the recovery plan and the
// filesystems it found and mounted.
type Env struct {
	// Plan is the validated plan from the Ignition config.
	Plan *plan.Plan
	// Role is the role file: role name, member, after-run action.
	Role ignition.Role
	// Member is the plan's entry for Role.Member; zero when none is named.
	Member plan.Member
	// Root is where the master's root filesystem is mounted (read-write
	// only for roles registered with WritableRoot); "" when none was found
	// and the role does not need one.
	Root string
	// RootDevice is the device Root was mounted from.
	RootDevice string
	// Backup is the directory holding the backup files (on a read-only
	// mount); "" when none was found and the role does not need one.
	Backup string
	// WriteBesideBackup writes a new file into Backup and returns its
	// path: the backup volume is mounted read-write for that write only.
	// It fails with ErrBackupReadOnly when the volume cannot be written,
	// and never replaces a file.
	WriteBesideBackup func(name string, data []byte) (string, error)
	// Console receives the role's progress lines and its marker line.
	Console io.Writer
	// Files are the Ignition config's files under /etc/etcd-rescue, by path.
	Files map[string]ignition.File
	// Token is the one-time signer token, if the config carries one.
	Token []byte
	// DryRun is set by etcd-rescue.dryrun=1 on the kernel command line:
	// the role must only check and explain.
	DryRun bool
}

// Role runs one recovery role in the rescue image. It prints its progress and
// ends with its own marker line (steps.Runner does both), then returns nil
// only if the role succeeded. The boot unmounts everything afterwards.
type Role func(ctx context.Context, env *Env) error

// RoleOption says what a role needs from the boot.
type RoleOption func(*roleSpec)

// NeedsRoot makes the boot fail unless it finds the master's root filesystem.
func NeedsRoot() RoleOption { return func(s *roleSpec) { s.needsRoot = true } }

// WritableRoot mounts the master's root filesystem read-write (implies
// NeedsRoot). Without it the root is mounted read-only.
func WritableRoot() RoleOption {
	return func(s *roleSpec) { s.needsRoot, s.writableRoot = true, true }
}

// NeedsBackup makes the boot fail unless it finds a backup volume.
func NeedsBackup() RoleOption { return func(s *roleSpec) { s.needsBackup = true } }

type roleSpec struct {
	run                                  Role
	needsRoot, writableRoot, needsBackup bool
}

var (
	rolesMu sync.RWMutex
	roles   = map[string]roleSpec{}
)

// Register makes a role available to the boot under name (restore, join,
// verify). Package orchestrator/roles calls it from its init functions, so
// the boot knows no role's package; registering a name twice panics, as it
// is a programming error.
func Register(name string, r Role, opts ...RoleOption) {
	rolesMu.Lock()
	defer rolesMu.Unlock()
	if _, dup := roles[name]; dup {
		panic(fmt.Sprintf("boot: role %q registered twice", name))
	}
	s := roleSpec{run: r}
	for _, o := range opts {
		o(&s)
	}
	roles[name] = s
}

// Roles lists the registered role names, sorted.
func Roles() []string {
	rolesMu.RLock()
	defer rolesMu.RUnlock()
	var names []string
	for n := range roles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupRole(name string) (roleSpec, bool) {
	rolesMu.RLock()
	defer rolesMu.RUnlock()
	s, ok := roles[name]
	return s, ok
}

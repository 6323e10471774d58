// Package ignition writes and reads the Ignition config that carries a
// recovery to a machine: the plan, the role the machine plays, and for a new
// master its one-time token. One config drives both the rescue image (which
// reads the files from it without applying the rest of Ignition) and a fresh
// CoreOS-family master (where Ignition writes the files and enables a
// first-boot unit that runs `etcd-rescue join`).
package ignition

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/vincent-petithory/dataurl"
	"sigs.k8s.io/yaml"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// Paths of the files the config carries.
const (
	// Dir holds every file etcd-rescue reads from the config.
	Dir = "/etc/etcd-rescue"
	// PlanPath is the recovery plan.
	PlanPath = plan.DefaultPath
	// RolePath says which role this machine plays (a Role as YAML).
	RolePath = Dir + "/role.yaml"
	// TokenPath is the new master's one-time signer token (mode 0600).
	TokenPath = Dir + "/token"
	// CACertPath is the etcd CA certificate a new master verifies the
	// signer with, when its root has none yet.
	CACertPath = Dir + "/etcd-ca.crt"
	// CAPinPath is the etcd CA's pin ("sha256:<hex>", as the signer prints it).
	CAPinPath = Dir + "/etcd-ca.sha256"
	// BinaryPath is where a CoreOS first boot finds etcd-rescue.
	BinaryPath = "/usr/local/bin/etcd-rescue"
	// JoinUnit is the first-boot unit of the join role.
	JoinUnit = "etcd-rescue-join.service"
)

// Roles a machine can play.
const (
	RoleRestore = "restore"
	RoleJoin    = "join"
	RoleVerify  = "verify"
	// RoleUndo undoes the latest restore on the master's root, offline.
	RoleUndo = "undo"
)

// After-run actions.
const (
	AfterPoweroff = "poweroff"
	AfterReboot   = "reboot"
)

// Role is the content of RolePath.
type Role struct {
	// Role is restore, join, verify or undo.
	Role string `json:"role"`
	// Member is this machine's member name in the plan. For restore it
	// defaults to the plan's survivor; verify uses it (when set) to find
	// the master's root disk.
	Member string `json:"member,omitempty"`
	// After is what the rescue image does once the role succeeded:
	// "poweroff" (default) or "reboot" (into the master's own OS).
	// A failure always powers off, or drops to a shell with
	// etcd-rescue.shell=1 on the kernel command line.
	After string `json:"after,omitempty"`
}

// Validate checks the role against the plan.
func (r Role) Validate(p *plan.Plan) error {
	switch r.Role {
	case RoleRestore, RoleJoin, RoleVerify, RoleUndo:
	case "":
		return errors.New("role is empty: use restore, join, verify or undo")
	default:
		return fmt.Errorf("role %q is unknown: use restore, join, verify or undo", r.Role)
	}
	switch r.After {
	case "", AfterPoweroff, AfterReboot:
	default:
		return fmt.Errorf("after %q is unknown: use poweroff or reboot", r.After)
	}
	if r.Member != "" && p != nil {
		if _, ok := p.Member(r.Member); !ok {
			return fmt.Errorf("member %q is not in the plan (members: %s)", r.Member, strings.Join(p.Names(), ", "))
		}
	}
	if r.Role == RoleJoin && r.Member == "" {
		return errors.New("the join role needs the member name of the new master (--member)")
	}
	if r.Role == RoleJoin && p != nil && r.Member == p.Survivor {
		return fmt.Errorf("member %q is the survivor: it is restored, not joined", r.Member)
	}
	return nil
}

// Options say what goes into a config.
type Options struct {
	// Plan is the plan file's bytes; it is validated and carried verbatim.
	Plan []byte
	// Role is the machine's role.
	Role Role
	// Token is the new master's one-time signer token. Required for join.
	Token []byte
	// CACert (PEM) or CAPin lets a new master whose root has no etcd CA
	// certificate verify the signer. Optional.
	CACert []byte
	CAPin  string
	// BinarySource is an Ignition source URL (https://, data:, …) for the
	// etcd-rescue binary on a CoreOS first boot; empty means the OS image
	// already has it at BinaryPath.
	BinarySource string
	// BinaryHash verifies BinarySource ("sha256-<hex>"); optional.
	BinaryHash string
	// Files are more files under Dir, by path, carried with mode 0600:
	// the LUKS passphrase or key files the plan's members[].luks names.
	Files map[string][]byte
}

// Build returns the Ignition config (spec 3.4.0) as JSON, validated by
// Ignition's own parser.
func Build(o Options) ([]byte, error) {
	p, err := plan.Parse(o.Plan)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	role := o.Role
	if role.Role == RoleRestore && role.Member == "" {
		role.Member = p.Survivor
	}
	if err := role.Validate(p); err != nil {
		return nil, err
	}
	if role.Role == RoleRestore && role.Member != p.Survivor {
		return nil, fmt.Errorf("member %q is not the survivor %q: only the survivor is restored", role.Member, p.Survivor)
	}
	if role.Role == RoleJoin && len(strings.TrimSpace(string(o.Token))) == 0 {
		return nil, errors.New("the join role needs the new master's token (--token-file)")
	}
	roleYAML, err := yaml.Marshal(role)
	if err != nil {
		return nil, err
	}

	cfg := types.Config{Ignition: types.Ignition{Version: types.MaxVersion.String()}}
	cfg.Storage.Files = append(cfg.Storage.Files,
		dataFile(PlanPath, o.Plan, 0o644),
		dataFile(RolePath, roleYAML, 0o644),
	)
	if len(o.Token) > 0 {
		cfg.Storage.Files = append(cfg.Storage.Files, dataFile(TokenPath, o.Token, 0o600))
	}
	if len(o.CACert) > 0 {
		cfg.Storage.Files = append(cfg.Storage.Files, dataFile(CACertPath, o.CACert, 0o644))
	}
	if o.CAPin != "" {
		cfg.Storage.Files = append(cfg.Storage.Files, dataFile(CAPinPath, []byte(o.CAPin+"\n"), 0o644))
	}
	if err := addFiles(&cfg, p, role.Member, o.Files); err != nil {
		return nil, err
	}
	if o.BinarySource != "" {
		f := types.File{Node: types.Node{Path: BinaryPath, Overwrite: ptr(true)}}
		f.Mode = ptr(0o755)
		f.Contents.Source = ptr(o.BinarySource)
		if o.BinaryHash != "" {
			f.Contents.Verification.Hash = ptr(o.BinaryHash)
		}
		cfg.Storage.Files = append(cfg.Storage.Files, f)
	}
	if role.Role == RoleJoin {
		cfg.Systemd.Units = append(cfg.Systemd.Units, types.Unit{
			Name:     JoinUnit,
			Enabled:  ptr(true),
			Contents: ptr(joinUnit(role.Member)),
		})
	}

	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	// Parse with Ignition's own parser: what it rejects, no machine reads.
	if _, rpt, err := v3_4.Parse(out); err != nil {
		return nil, fmt.Errorf("ignition rejects the config: %w: %s", err, rpt.String())
	} else if rpt.IsFatal() {
		return nil, fmt.Errorf("ignition rejects the config: %s", rpt.String())
	}
	return append(out, '\n'), nil
}

// joinUnit runs the join once on a CoreOS-family first boot, after the
// network is up and before the kubelet starts etcd from its manifest; so it
// must not wait for etcd (--no-wait): the kubelet starts it afterwards.
func joinUnit(member string) string {
	return `[Unit]
Description=etcd-rescue: join this master to the recovered etcd cluster
Wants=network-online.target
After=network-online.target
Before=kubelet.service
ConditionPathExists=!/var/lib/etcd-rescue/joined

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + BinaryPath + ` join --no-wait --plan ` + PlanPath + ` --member ` + member + ` --token-file ` + TokenPath + `
ExecStartPost=/usr/bin/touch /var/lib/etcd-rescue/joined
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`
}

func dataFile(path string, data []byte, mode int) types.File {
	f := types.File{Node: types.Node{Path: path, Overwrite: ptr(true)}}
	f.Mode = ptr(mode)
	f.Contents.Source = ptr(dataurl.EncodeBytes(data))
	return f
}

func ptr[T any](v T) *T { return &v }

// Package plan defines the recovery plan: the one small, versioned file that
// says which cluster is being recovered, which member survived, which new
// members must join, where the signer listens and where the backup lives.
//
// The same plan drives every role (restore, join, verify) on every machine,
// whether it is read from disk on a live host or carried inside an Ignition
// config to the rescue image.
package plan

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcdversion"

	"sigs.k8s.io/yaml"
)

// Version is the plan format this build reads and writes.
const Version = 1

// Restore sources (Plan.Source).
const (
	SourceBackup       = "backup"
	SourceSurvivorData = "survivor-data"
)

// DefaultPath is where the rescue image and first-boot units find the plan.
const DefaultPath = "/etc/etcd-rescue/plan.yaml"

// Plan is the recovery plan, version 1.
type Plan struct {
	// Version must be 1.
	Version int `json:"version"`
	// Cluster names the cluster; Domain is used for etcd-N DNS names.
	Cluster Cluster `json:"cluster"`
	// Profile is the master layout: "openshift-4.3" or "kubeadm".
	// Empty means detect it from the master's root.
	Profile string `json:"profile,omitempty"`
	// Survivor is the Name of the member that is restored from the backup.
	Survivor string `json:"survivor"`
	// Members is the full membership the recovery ends with, survivor included.
	Members []Member `json:"members"`
	// Signer is the temporary certificate signer run on the survivor.
	Signer Signer `json:"signer,omitempty"`
	// Backup says where the backup files are.
	Backup Backup `json:"backup,omitempty"`
	// Source is what the restore role restores from: "backup" (also when
	// empty) or "survivor-data", the survivor's own data dir (its WAL
	// included), which `etcd-rescue survey` recommends when it is fresher.
	Source string `json:"source,omitempty"`
	// EtcdVersion is the etcd version the masters run (for example "3.5.17").
	// Empty means read it from the etcd manifest's image tag.
	EtcdVersion string `json:"etcdVersion,omitempty"`
}

// Cluster names the cluster being recovered.
type Cluster struct {
	Name   string `json:"name"`
	Domain string `json:"domain,omitempty"`
	// Token is the initial-cluster-token given to the restored cluster.
	// Default "etcd-cluster-1", as the OpenShift 4.3 restore script uses.
	Token string `json:"token,omitempty"`
}

// Member is one etcd member of the recovered cluster.
type Member struct {
	// Name is the etcd member name (for example "etcd-member-master-0.example.com").
	Name string `json:"name"`
	// Host is the node name of the master that runs the member.
	Host string `json:"host,omitempty"`
	// IP is the master's address; it is a SAN of the member's certificates.
	// The rescue image gives it to its first network interface.
	IP string `json:"ip,omitempty"`
	// Prefix is the length of IP's network prefix for that static address.
	// Default 24 for IPv4, 64 for IPv6.
	Prefix int `json:"prefix,omitempty"`
	// DNSName is the member's etcd-N name; it is a SAN of the member's certificates.
	DNSName string `json:"dnsName,omitempty"`
	// PeerURL is the member's peer URL (https://HOST:2380).
	PeerURL string `json:"peerURL"`
	// ClientURL is the member's client URL (https://HOST:2379).
	ClientURL string `json:"clientURL,omitempty"`
	// Disk identifies the master's root filesystem in the rescue image.
	Disk Disk `json:"disk,omitempty"`
	// LUKS gives the rescue image the key of the master's LUKS volumes.
	LUKS *LUKS `json:"luks,omitempty"`
	// Network is the member's network in the rescue image (network.go).
	// Empty means read it from the master's own configuration.
	Network *Network `json:"network,omitempty"`
}

// Disk identifies a filesystem by label or UUID. Empty means search for it.
type Disk struct {
	Label string `json:"label,omitempty"`
	UUID  string `json:"uuid,omitempty"`
}

// Signer is where the temporary signer listens and how long it lives.
type Signer struct {
	// Address is the signer's URL as new masters reach it (https://IP:9943).
	Address string `json:"address,omitempty"`
	// TTL is how long the signer runs at most. Default 2h.
	TTL Duration `json:"ttl,omitempty"`
}

// Backup locates the backup files.
type Backup struct {
	// Dir is a directory holding the backup files (on a live host).
	Dir string `json:"dir,omitempty"`
	// Disk is the backup volume in the rescue image. Empty means any
	// filesystem that holds snapshot_*.db.
	Disk Disk `json:"disk,omitempty"`
	// SkipHashCheck allows a snapshot without its sha256 trailer (a copy of a
	// data dir's db file). Default false.
	SkipHashCheck bool `json:"skipHashCheck,omitempty"`
}

// Duration is a time.Duration written as "2h" in YAML and JSON.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// UnmarshalJSON reads "90m" or "2h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		d.Duration = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	d.Duration = v
	return nil
}

// Load reads and validates a plan file.
func Load(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	return p, nil
}

// Parse decodes a plan (YAML or JSON), rejects unknown fields, fills defaults
// and validates it.
func Parse(b []byte) (*Plan, error) {
	var p Plan
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	p.setDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Marshal encodes the plan as YAML.
func (p *Plan) Marshal() ([]byte, error) { return yaml.Marshal(p) }

func (p *Plan) setDefaults() {
	if p.Cluster.Token == "" {
		p.Cluster.Token = "etcd-cluster-1"
	}
	if p.Signer.TTL.Duration == 0 {
		p.Signer.TTL.Duration = 2 * time.Hour
	}
}

// Validate reports every problem in the plan at once.
func (p *Plan) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if p.Version != Version {
		add("version is %d; this etcd-rescue reads version %d (set `version: %d`)", p.Version, Version, Version)
	}
	if p.Cluster.Name == "" {
		add("cluster.name is empty")
	}
	switch p.Profile {
	case "", "openshift-4.3", "kubeadm":
	default:
		add("profile %q is unknown: use openshift-4.3 or kubeadm, or leave it empty to detect", p.Profile)
	}
	switch p.Source {
	case "", SourceBackup, SourceSurvivorData:
	default:
		add("source %q is unknown: use %s or %s (the survivor's own data dir)", p.Source, SourceBackup, SourceSurvivorData)
	}
	if p.EtcdVersion != "" {
		if v, err := etcdversion.Parse(p.EtcdVersion); err != nil {
			add("etcdVersion: %v", err)
		} else if err := etcdversion.Check(v); err != nil {
			add("etcdVersion: %v", err)
		}
	}
	if len(p.Members) == 0 {
		add("members is empty: list every member of the recovered cluster, survivor included")
	}
	names := map[string]bool{}
	for i, m := range p.Members {
		where := fmt.Sprintf("members[%d]", i)
		if err := CheckMemberName(m.Name); err != nil {
			add("%s: %v", where, err)
		} else if names[m.Name] {
			add("%s.name %q is listed twice", where, m.Name)
		}
		names[m.Name] = true
		if err := CheckPeerURL(m.PeerURL); err != nil {
			add("%s (%s) peerURL: %v", where, m.Name, err)
		}
		if m.ClientURL != "" {
			if err := CheckClientURL(m.ClientURL); err != nil {
				add("%s (%s) clientURL: %v", where, m.Name, err)
			}
		}
		if m.IP != "" && net.ParseIP(m.IP) == nil {
			add("%s (%s) ip %q is not an IP address", where, m.Name, m.IP)
		}
		if m.Prefix < 0 || m.Prefix > 128 || (m.Prefix > 32 && net.ParseIP(m.IP).To4() != nil) {
			add("%s (%s) prefix %d is not a prefix length for %s", where, m.Name, m.Prefix, m.IP)
		}
		errs = append(errs, m.LUKS.check(where+" ("+m.Name+")")...)
		if m.Network != nil {
			errs = append(errs, checkNetwork(fmt.Sprintf("%s (%s)", where, m.Name), m)...)
		}
	}
	errs = append(errs, p.checkShared()...)
	if p.Survivor == "" {
		add("survivor is empty: name the member restored from the backup")
	} else if !names[p.Survivor] {
		add("survivor %q is not one of the members", p.Survivor)
	}
	if p.Signer.Address != "" {
		if err := checkURL(p.Signer.Address, "https://IP:9943", false); err != nil {
			add("signer.address: %v", err)
		}
	}
	if p.Signer.TTL.Duration < 0 {
		add("signer.ttl %s is negative: give how long the signer may run, like 2h", p.Signer.TTL.Duration)
	}
	return errors.Join(errs...)
}

// checkShared refuses what two members may not share: an IP, a DNS name or
// a host (the signer would put one machine's names into another's
// certificates), or a peer URL's host:port. Loopback IPs are the exception:
// members of a one-machine cluster (a lab or a test) all have one, and are
// told apart by their ports.
func (p *Plan) checkShared() []error {
	var errs []error
	seen := map[string]string{}
	same := func(kind, value, name string) {
		if value == "" {
			return
		}
		key := kind + "\x00" + value
		if other, dup := seen[key]; dup && other != name {
			errs = append(errs, fmt.Errorf("members %s and %s share the %s %s: each member is its own machine; give each its own %s", other, name, kind, value, kind))
			return
		}
		seen[key] = name
	}
	for _, m := range p.Members {
		if ip := net.ParseIP(m.IP); ip != nil && !ip.IsLoopback() {
			same("ip", ip.String(), m.Name)
		}
		same("dnsName", strings.ToLower(strings.TrimSuffix(m.DNSName, ".")), m.Name)
		same("host", strings.ToLower(m.Host), m.Name)
		if m.PeerURL != "" {
			same("peer URL host:port", hostPort(m.PeerURL), m.Name)
		}
	}
	return errs
}

// Member returns the member with the given name.
func (p *Plan) Member(name string) (Member, bool) {
	for _, m := range p.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// SurvivorMember returns the survivor's member entry.
func (p *Plan) SurvivorMember() Member {
	m, _ := p.Member(p.Survivor)
	return m
}

// InitialCluster formats members as etcd's --initial-cluster value.
func InitialCluster(members ...Member) string {
	parts := make([]string, 0, len(members))
	for _, m := range members {
		parts = append(parts, m.Name+"="+m.PeerURL)
	}
	return strings.Join(parts, ",")
}

// ParseInitialCluster parses and checks an --initial-cluster value
// ("name=url[,name=url]"): every entry has a name CheckMemberName accepts and
// a URL CheckPeerURL accepts, and no name or host:port appears twice.
func ParseInitialCluster(s string) ([]Member, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("initial cluster is empty: give name=https://HOST:2380")
	}
	var out []Member
	seenName := map[string]bool{}
	seenURL := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		name, u, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("initial cluster entry %q is not name=url", part)
		}
		name = strings.TrimSpace(name)
		u = strings.TrimSpace(u)
		if name == "" {
			return nil, fmt.Errorf("initial cluster entry %q has no member name", part)
		}
		if err := CheckMemberName(name); err != nil {
			return nil, fmt.Errorf("initial cluster entry %q: %v", part, err)
		}
		if err := CheckPeerURL(u); err != nil {
			return nil, fmt.Errorf("initial cluster entry %q: url %v", part, err)
		}
		if seenName[name] {
			return nil, fmt.Errorf("initial cluster names member %q twice", name)
		}
		if seenURL[hostPort(u)] {
			return nil, fmt.Errorf("initial cluster lists peer URL %s twice (two members cannot share a host:port)", u)
		}
		seenName[name], seenURL[hostPort(u)] = true, true
		out = append(out, Member{Name: name, PeerURL: u})
	}
	return out, nil
}

// Names returns the member names, sorted.
func (p *Plan) Names() []string {
	var n []string
	for _, m := range p.Members {
		n = append(n, m.Name)
	}
	sort.Strings(n)
	return n
}

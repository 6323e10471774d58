// Package dnslb computes the DNS records and load-balancer targets of the
// recovered masters from their nodes' InternalIP addresses, prints them as
// a plan (table or JSON), and applies them through hooks: commands that get
// the change as JSON on stdin, so Route 53, a BIND nsupdate, a lab DNS or a
// load balancer's API can be plugged in.
//
// For the openshift-4.3 profile the records are the members' etcd-N names
// (etcd-0.<domain> …) and the _etcd-server-ssl._tcp SRV record; the load
// balancer pools are the API (6443) and the machine config server (22623).
// For kubeadm there are no etcd records and only the API pool.
package dnslb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/nodes"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// Version is the version of the change documents hooks receive.
const Version = 1

// Profiles.
const (
	ProfileOpenShift = "openshift-4.3"
	ProfileKubeadm   = "kubeadm"
)

// Actions of a DNS record.
const (
	ActionCreate  = "create"  // the name does not resolve now
	ActionUpdate  = "update"  // it resolves to other values
	ActionKeep    = "keep"    // it already resolves to the values
	ActionUnknown = "unknown" // it was not looked up
)

// Member is one planned master: its node name and its etcd DNS name.
type Member struct {
	// Node is the Kubernetes node name.
	Node string
	// DNSName is the member's etcd-N name (etcd-0.<domain>). Empty means
	// etcd-<index>.<domain>, index being its position in the list.
	DNSName string
}

// Input is what the change is computed from.
type Input struct {
	// Cluster names the cluster (for the hooks).
	Cluster string
	// Domain is the cluster domain (clustername.example.com).
	Domain string
	// Profile is ProfileOpenShift (default) or ProfileKubeadm.
	Profile string
	// Members are the planned masters, in etcd-N order.
	Members []Member
	// Nodes are the registered nodes; each member's node must be among them
	// with an InternalIP.
	Nodes []corev1.Node
	// TTL of the records. Default 60s.
	TTL uint32
}

// Record is one DNS RRset.
type Record struct {
	// Name is the fully qualified name, with a trailing dot.
	Name string `json:"name"`
	// Type is A, AAAA or SRV.
	Type string `json:"type"`
	// TTL in seconds.
	TTL uint32 `json:"ttl"`
	// Values is the wanted RRset: addresses, or "priority weight port target" for SRV.
	Values []string `json:"values"`
	// Current is what the name resolves to now, when it was looked up.
	Current []string `json:"current,omitempty"`
	// Action is create, update, keep or unknown.
	Action string `json:"action"`
	// Node is the node whose address the record carries (A and AAAA).
	Node string `json:"node,omitempty"`
}

// DNSChange is the document a DNS hook receives on stdin.
type DNSChange struct {
	Version int      `json:"version"`
	Kind    string   `json:"kind"` // "dns"
	Cluster string   `json:"cluster,omitempty"`
	Domain  string   `json:"domain"`
	Records []Record `json:"records"`
}

// Pool is one load-balancer pool: its frontends and the wanted targets.
type Pool struct {
	Name      string   `json:"name"`
	Frontends []string `json:"frontends"`
	Port      int      `json:"port"`
	// Targets are IP:port of every master, sorted.
	Targets []string `json:"targets"`
	// Nodes are the node names behind Targets, in the same order.
	Nodes []string `json:"nodes"`
}

// LBChange is the document a load-balancer hook receives on stdin.
type LBChange struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"` // "lb"
	Cluster string `json:"cluster,omitempty"`
	Domain  string `json:"domain"`
	Pools   []Pool `json:"pools"`
}

// Change is the whole plan.
type Change struct {
	DNS DNSChange `json:"dns"`
	LB  LBChange  `json:"lb"`
}

// Compute builds the change. Every member's node must be registered with an
// InternalIP; the error lists every one that is not.
func Compute(in Input) (*Change, error) {
	if in.Domain == "" {
		return nil, errors.New("no cluster domain: give --domain (the plan's cluster.domain, for example clustername.example.com)")
	}
	if len(in.Members) == 0 {
		return nil, errors.New("no members: give the masters' node names in etcd-N order (--nodes) or a plan whose members have host set")
	}
	if in.Profile == "" {
		in.Profile = ProfileOpenShift
	}
	if in.Profile != ProfileOpenShift && in.Profile != ProfileKubeadm {
		return nil, fmt.Errorf("profile %q is unknown: use %s or %s", in.Profile, ProfileOpenShift, ProfileKubeadm)
	}
	if in.TTL == 0 {
		in.TTL = 60
	}
	domain := strings.TrimSuffix(in.Domain, ".")
	byName := map[string]*corev1.Node{}
	for i := range in.Nodes {
		byName[in.Nodes[i].Name] = &in.Nodes[i]
	}
	var errs []error
	type target struct{ node, ip, dns string }
	var targets []target
	for i, m := range in.Members {
		n, ok := byName[m.Node]
		if !ok {
			errs = append(errs, fmt.Errorf("node %s is not registered (oc get nodes): wait until it is (etcd-rescue wait-nodes)", m.Node))
			continue
		}
		ip := nodes.InternalIP(n)
		if ip == "" {
			errs = append(errs, fmt.Errorf("node %s has no InternalIP address (oc get node %s -o jsonpath='{.status.addresses}')", m.Node, m.Node))
			continue
		}
		name := m.DNSName
		if name == "" {
			name = fmt.Sprintf("etcd-%d.%s", i, domain)
		}
		targets = append(targets, target{m.Node, ip, fqdn(name)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := &Change{
		DNS: DNSChange{Version: Version, Kind: "dns", Cluster: in.Cluster, Domain: domain},
		LB:  LBChange{Version: Version, Kind: "lb", Cluster: in.Cluster, Domain: domain},
	}
	if in.Profile == ProfileOpenShift {
		var srv []string
		for _, t := range targets {
			typ := "A"
			if net.ParseIP(t.ip).To4() == nil {
				typ = "AAAA"
			}
			c.DNS.Records = append(c.DNS.Records, Record{Name: t.dns, Type: typ, TTL: in.TTL, Values: []string{t.ip}, Action: ActionUnknown, Node: t.node})
			srv = append(srv, "0 10 2380 "+t.dns)
		}
		c.DNS.Records = append(c.DNS.Records, Record{Name: fqdn("_etcd-server-ssl._tcp." + domain), Type: "SRV", TTL: in.TTL, Values: srv, Action: ActionUnknown})
	}
	pool := func(name string, port int, frontends ...string) Pool {
		p := Pool{Name: name, Port: port, Frontends: frontends}
		sorted := slices.Clone(targets)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].node < sorted[j].node })
		for _, t := range sorted {
			p.Targets = append(p.Targets, net.JoinHostPort(t.ip, fmt.Sprint(port)))
			p.Nodes = append(p.Nodes, t.node)
		}
		return p
	}
	c.LB.Pools = append(c.LB.Pools, pool("api", 6443, "api."+domain+":6443", "api-int."+domain+":6443"))
	if in.Profile == ProfileOpenShift {
		c.LB.Pools = append(c.LB.Pools, pool("machine-config-server", 22623, "api-int."+domain+":22623"))
	}
	return c, nil
}

func fqdn(s string) string { return strings.TrimSuffix(s, ".") + "." }

// Resolver looks names up; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Lookup fills every record's Current values and Action from what the
// names resolve to now. A lookup error other than "no such host" leaves the
// record's action unknown.
func (c *Change) Lookup(ctx context.Context, r Resolver) {
	for i := range c.DNS.Records {
		rec := &c.DNS.Records[i]
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cur, err := lookup(lctx, r, rec)
		cancel()
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			rec.Current, rec.Action = nil, ActionCreate
		case err != nil:
			rec.Current, rec.Action = nil, ActionUnknown
		default:
			sort.Strings(cur)
			rec.Current = cur
			rec.Action = ActionUpdate
			if sameSet(cur, rec.Values) {
				rec.Action = ActionKeep
			}
		}
	}
}

func lookup(ctx context.Context, r Resolver, rec *Record) ([]string, error) {
	name := strings.TrimSuffix(rec.Name, ".")
	switch rec.Type {
	case "SRV":
		_, srvs, err := r.LookupSRV(ctx, "", "", name)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range srvs {
			out = append(out, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, fqdn(s.Target)))
		}
		return out, nil
	default:
		addrs, err := r.LookupHost(ctx, name)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, a := range addrs {
			ip := net.ParseIP(a)
			if ip == nil || (rec.Type == "A") != (ip.To4() != nil) {
				continue
			}
			out = append(out, ip.String())
		}
		if len(out) == 0 {
			return nil, &net.DNSError{Err: "no " + rec.Type + " record", Name: name, IsNotFound: true}
		}
		return out, nil
	}
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	sort.Strings(x)
	sort.Strings(y)
	return slices.Equal(x, y)
}

// WriteTable prints the DNS records and load-balancer pools.
func (c *Change) WriteTable(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(c.DNS.Records) > 0 {
		fmt.Fprintln(tw, "RECORD\tTYPE\tTTL\tNOW\tWANTED\tACTION")
		for _, r := range c.DNS.Records {
			now := strings.Join(r.Current, ", ")
			if now == "" {
				now = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, r.Type, r.TTL, now, strings.Join(r.Values, ", "), r.Action)
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw, "LB POOL\tFRONTENDS\tTARGETS")
	for _, p := range c.LB.Pools {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, strings.Join(p.Frontends, ", "), strings.Join(p.Targets, ", "))
	}
	tw.Flush()
}

// WriteJSON prints the change as indented JSON.
func (c *Change) WriteJSON(out io.Writer) error {
	e := json.NewEncoder(out)
	e.SetIndent("", "  ")
	return e.Encode(c)
}

// RunHook runs cmd with `sh -c`, the document as JSON on its stdin, and
// ETCD_RESCUE_HOOK set to kind ("dns" or "lb"). The hook's output goes to
// out; a non-zero exit is an error that quotes the end of its stderr.
func RunHook(ctx context.Context, kind, cmd string, doc any, out io.Writer) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Stdin = strings.NewReader(string(b) + "\n")
	c.Env = append(os.Environ(), "ETCD_RESCUE_HOOK="+kind)
	var stderr tail
	c.Stdout = out
	c.Stderr = io.MultiWriter(out, &stderr)
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s hook %q: %v: %s; the change was not (fully) applied: fix the hook and run it again (it gets the same JSON)", kind, cmd, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// tail keeps the last 2 KiB written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }

// FromPlan fills an Input's cluster, domain, profile and members (in plan
// order: etcd-0 is the first member) from a recovery plan; fields already
// set are kept.
func FromPlan(in Input, p *plan.Plan) (Input, error) {
	in.Cluster = p.Cluster.Name
	if in.Domain == "" {
		in.Domain = p.Cluster.Domain
	}
	if in.Profile == "" {
		in.Profile = p.Profile
	}
	in.Members = nil
	for _, m := range p.Members {
		if m.Host == "" {
			return in, fmt.Errorf("plan member %s has no host: set members[].host to its node name", m.Name)
		}
		in.Members = append(in.Members, Member{Node: m.Host, DNSName: m.DNSName})
	}
	return in, nil
}

// NodeLister lists the cluster's nodes (*apiclient.Clients is one).
type NodeLister interface {
	ListNodes(ctx context.Context, selector string) (*corev1.NodeList, error)
}

// FromCluster computes the change for in from the cluster's registered
// nodes and, when r is not nil, looks the names up to show what changes.
func FromCluster(ctx context.Context, api NodeLister, in Input, r Resolver) (*Change, error) {
	// Every node, not only labelled masters: a new master may not carry
	// its role label yet.
	list, err := api.ListNodes(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	in.Nodes = list.Items
	ch, err := Compute(in)
	if err != nil {
		return nil, err
	}
	if r != nil {
		ch.Lookup(ctx, r)
	}
	return ch, nil
}

// Apply runs the DNS hook (when there are records) and the load-balancer
// hook, each given, with their output and what they applied on out.
func (c *Change) Apply(ctx context.Context, dnsHook, lbHook string, out io.Writer) error {
	if dnsHook != "" && len(c.DNS.Records) > 0 {
		if err := RunHook(ctx, "dns", dnsHook, c.DNS, out); err != nil {
			return err
		}
		fmt.Fprintln(out, "dns-lb: dns hook applied", len(c.DNS.Records), "records")
	}
	if lbHook != "" {
		if err := RunHook(ctx, "lb", lbHook, c.LB, out); err != nil {
			return err
		}
		fmt.Fprintln(out, "dns-lb: lb hook applied", len(c.LB.Pools), "pools")
	}
	return nil
}

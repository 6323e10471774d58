// Package join makes a new master an etcd member of the restored cluster, as
// a list of idempotent steps (operation "join"): keep whatever etcd state the
// master has aside, get certificates from the temporary signer with the
// master's one-time token, have the member added as a learner, write the
// etcd configuration with the current members and state "existing", and wait
// until the member is started, voting and holds the leader's data (HashKV).
//
// Every step checks real state first, so a second run changes nothing and a
// run killed anywhere (even between the member add and the start of etcd)
// finishes when run again.
package join

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/lock"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// Options configures a join. With a plan, the member's URLs, host, IP and
// DNS name come from it and flags only have to name the member.
type Options struct {
	// Root is the new master's root. Default "/".
	Root string
	// Plan is the recovery plan; optional.
	Plan *plan.Plan
	// Profile is the master layout. Default: the plan's, else detected.
	Profile *profile.Profile
	// Member is the joining member. Its Name is required. With a plan, the
	// plan's entry for that name gives the rest: a PeerURL given here must
	// match it, a ClientURL given here overrides it. Without a plan, the
	// PeerURL is required; the ClientURL defaults to the peer URL's host
	// on port 2379; DNSName, IP and Host name its certificates and become
	// their SANs.
	Member plan.Member
	// Endpoints are client URLs of the running cluster. Default: the
	// survivor's client URL from the plan.
	Endpoints []string
	// Signer is the signer's URL (https://IP:9943). Default: the plan's.
	Signer string
	// Token is the master's one-time bootstrap token; only needed while the
	// master has no valid certificates.
	Token string
	// CACert is the etcd CA certificate file trusted for the signer and
	// etcd. Default: the profile's CA path under Root when it exists.
	CACert string
	// CAHash pins the CA instead ("sha256:<hex>", printed by the signer).
	CAHash string
	// ReplaceStale removes an old member holding the name or peer URL.
	ReplaceStale bool
	// DryRun runs only the checks and prints the plan.
	DryRun bool
	// NoWait stops after writing the etcd configuration.
	NoWait bool
	// WaitTimeout bounds the wait (default 20m); WaitInterval is the pace
	// of its looks (default 2s).
	WaitTimeout, WaitInterval time.Duration
	// SignerTimeout is how long an unreachable or not yet ready signer is
	// retried (default 5m); refusals are final at once.
	SignerTimeout time.Duration
	// Image is the etcd image, used only when the master has no etcd
	// manifest to adapt; ListenIP is where that new manifest has etcd
	// listen (default 0.0.0.0).
	Image, ListenIP string
	// Out receives the step lines and the marker. Default: discarded.
	Out io.Writer
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// AfterStep is called after each step that ran (tests stop runs there).
	AfterStep func(name string)
}

// Run joins the master. It prints the step lines and JOIN-OK or JOIN-FAILED.
func Run(ctx context.Context, o Options) error {
	jn, err := prepare(o)
	if err != nil {
		if o.Out != nil {
			fmt.Fprintf(o.Out, "JOIN-FAILED: %v\n", err)
		}
		return err
	}
	defer jn.close()
	r := &steps.Runner{Operation: "join", Out: jn.out, DryRun: o.DryRun, Journal: jn.j, Now: o.Now, AfterStep: o.AfterStep}
	if o.DryRun {
		r.Journal = nil
	}
	err = r.Run(ctx, jn.steps(), func() string {
		id := jn.j.Notes["memberID"]
		if o.NoWait {
			return fmt.Sprintf("member %s %s configured; etcd start not awaited (--no-wait)", jn.m.Name, id)
		}
		return fmt.Sprintf("member %s %s started, voting, HashKV equal to the leader's", jn.m.Name, id)
	})
	if err == nil && !o.DryRun && !o.NoWait {
		t := jn.now().UTC()
		jn.j.Finished = &t
		if serr := jn.j.Save(); serr != nil {
			return serr
		}
	}
	return err
}

// joiner is one join run's resolved settings and state.
type joiner struct {
	o    Options
	root string
	// rootfs resolves paths on the master as it sees them.
	rootfs *rootfs.Root
	// lock keeps other runs off the root until close.
	lock  *lock.Lock
	prof  *profile.Profile
	m     plan.Member
	j     *journal.Journal
	out   io.Writer
	kinds []string // kinds with distinct files (kubeadm's metric is its server cert)
	cli   *clientv3.Client
	// present is set by member-add's Check when the member is in the
	// cluster but not yet in the journal.
	present *presentMember
}

func (jn *joiner) now() time.Time {
	if jn.o.Now != nil {
		return jn.o.Now()
	}
	return time.Now()
}

func (jn *joiner) close() {
	if jn.cli != nil {
		jn.cli.Close()
		jn.cli = nil
	}
	if jn.lock != nil {
		jn.lock.Release()
		jn.lock = nil
	}
}

// checkMember applies the plan's rules to a member given by flags.
func checkMember(m plan.Member) error {
	if err := plan.CheckMemberName(m.Name); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if err := plan.CheckPeerURL(m.PeerURL); err != nil {
		return fmt.Errorf("peer URL of %s: %w", m.Name, err)
	}
	if err := plan.CheckClientURL(m.ClientURL); err != nil {
		return fmt.Errorf("client URL of %s: %w", m.Name, err)
	}
	return nil
}

// prepare loads and checks the join's inputs and begins or resumes its
// journal; it changes nothing on the root.
func prepare(o Options) (*joiner, error) {
	jn := &joiner{o: o, root: o.Root, out: o.Out}
	if jn.root == "" {
		jn.root = "/"
	}
	if jn.out == nil {
		jn.out = io.Discard
	}
	if o.Member.Name == "" {
		return nil, errors.New("--name is required: the etcd member name of this master, as the plan lists it")
	}
	root, err := rootfs.Open(jn.root)
	if err != nil {
		return nil, err
	}
	jn.root, jn.rootfs = root.Path, root
	// Held until close: the journal is read and everything runs under it.
	if jn.lock, err = lock.Acquire(root.Path); err != nil {
		return nil, err
	}
	if err := jn.load(); err != nil {
		jn.close()
		return nil, err
	}
	return jn, nil
}

// load resolves the member, profile and journal of a locked join.
func (jn *joiner) load() error {
	o := jn.o
	m := o.Member
	if o.Plan != nil {
		pm, ok := o.Plan.Member(m.Name)
		if !ok {
			return fmt.Errorf("member %q is not in the plan (members: %s)", m.Name, strings.Join(o.Plan.Names(), ", "))
		}
		if m.Name == o.Plan.Survivor {
			return fmt.Errorf("member %q is the survivor: it is restored, not joined", m.Name)
		}
		if m.PeerURL != "" && m.PeerURL != pm.PeerURL {
			return fmt.Errorf("--peer-url %s differs from the plan's %s for %s: fix one of them", m.PeerURL, pm.PeerURL, m.Name)
		}
		if m.ClientURL != "" {
			pm.ClientURL = m.ClientURL
		}
		m = pm
		if len(o.Endpoints) == 0 && o.Plan.SurvivorMember().ClientURL != "" {
			jn.o.Endpoints = []string{o.Plan.SurvivorMember().ClientURL}
		}
		if o.Signer == "" {
			jn.o.Signer = o.Plan.Signer.Address
		}
	}
	if m.PeerURL == "" {
		return errors.New("--peer-url is required (https://HOST:2380) when the plan does not give it")
	}
	if m.ClientURL == "" {
		m.ClientURL = defaultClientURL(m.PeerURL)
	}
	if err := checkMember(m); err != nil {
		return err
	}
	jn.m = m
	if len(jn.o.Endpoints) == 0 {
		return errors.New("--endpoints is required: the client URL of the restored master (https://IP:2379)")
	}
	prof := o.Profile
	var err error
	if prof != nil {
		cp := *prof
		prof = &cp
	}
	if prof == nil {
		if o.Plan != nil && o.Plan.Profile != "" {
			prof, err = profile.Get(o.Plan.Profile)
		} else {
			prof, err = profile.DetectIn(jn.rootfs)
		}
		if err != nil {
			return err
		}
	}
	jn.prof = prof
	// Checked before the journal is begun: a broken manifest is refused
	// with the root unchanged.
	dataDir, why, err := jn.manifestDataDir()
	if err != nil {
		return err
	}
	// A first run refuses a running etcd before its journal begins (a
	// resumed one, whose own member may be running, decides in
	// chooseDataDir).
	if _, err := os.Lstat(journal.Path(jn.root, "join")); errors.Is(err, fs.ErrNotExist) {
		if err := jn.checkNotRunning(cmp.Or(dataDir, prof.DataDir)); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, k := range signer.Kinds {
		c, _ := prof.MemberCert(k, signer.CertIdentity(m))
		if !seen[c] {
			seen[c] = true
			jn.kinds = append(jn.kinds, k)
		}
	}
	params := map[string]string{"name": m.Name, "peerURL": m.PeerURL, "profile": prof.Name}
	var resumed bool
	if jn.j, resumed, err = journal.Begin(jn.root, "join", params, jn.now(), o.DryRun); err != nil {
		return err
	}
	if err := jn.j.CheckInRoot(jn.root); err != nil {
		return err
	}
	if resumed {
		fmt.Fprintf(jn.out, "resuming join run %s from %s\n", jn.j.RunID, jn.j.File())
	}
	return jn.chooseDataDir(dataDir, why)
}

func defaultClientURL(peer string) string {
	i := strings.LastIndex(peer, ":")
	if i < 0 {
		return peer
	}
	return peer[:i] + ":2379"
}

func (jn *joiner) steps() []steps.Step {
	list := []steps.Step{
		jn.keepStep(),
		jn.keysStep(),
		jn.certsStep(),
		jn.memberAddStep(),
		jn.configStep(),
	}
	if !jn.o.NoWait {
		list = append(list, jn.waitStep())
	}
	return list
}

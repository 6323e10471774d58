// Package members wraps the etcd member API for the recovery: listing the
// members, adding a new master as a learner without risking quorum, promoting
// learners that caught up, and telling whether the plan's full membership is
// reached. The signer and `join` share it, so both apply the same rules.
package members

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// Creds says how to reach etcd: endpoints and TLS client credentials, either
// as files or as a ready TLS config.
type Creds struct {
	Endpoints []string
	// CACert, Cert and Key are PEM files (etcdctl's --cacert/--cert/--key).
	CACert, Cert, Key string
	// TLS, when set, is used instead of the files.
	TLS *tls.Config
}

// Dial connects to etcd. The client is lazy: an unreachable cluster shows up
// as an error of the first call, bounded by that call's context.
func Dial(c Creds) (*clientv3.Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints: give --endpoints https://IP:2379")
	}
	tc := c.TLS
	if tc == nil && (c.CACert != "" || c.Cert != "") {
		info := transport.TLSInfo{CertFile: c.Cert, KeyFile: c.Key, TrustedCAFile: c.CACert}
		var err error
		if tc, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd client TLS (cacert %s, cert %s): %w", c.CACert, c.Cert, err)
		}
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints,
		TLS:         tc,
		DialTimeout: 5 * time.Second,
		Logger:      quietLogger(),
	})
}

func quietLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

// Member is one etcd member as the member API reports it.
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
}

// Started reports whether the member's etcd has run and published itself:
// etcd leaves the name of a member empty until its process starts.
func (m Member) Started() bool { return m.Name != "" }

// HasPeerURL reports whether the member advertises the peer URL.
func (m Member) HasPeerURL(u string) bool {
	for _, p := range m.PeerURLs {
		if sameURL(p, u) {
			return true
		}
	}
	return false
}

// String names the member for messages.
func (m Member) String() string {
	name := m.Name
	if name == "" {
		name = "(unstarted)"
	}
	return fmt.Sprintf("%s %x [%s]", name, m.ID, strings.Join(m.PeerURLs, ","))
}

func sameURL(a, b string) bool { return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/") }

// List returns the members, ordered by name then ID.
func List(ctx context.Context, cli *clientv3.Client) ([]Member, error) {
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	out := make([]Member, 0, len(resp.Members))
	for _, m := range resp.Members {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// InitialCluster formats etcd's --initial-cluster for a member that joins:
// every started member plus the joining one (selfID) under selfName.
// Unstarted members other than the joining one are left out: they have no
// name yet, and AddLearner refuses to add next to them anyway.
func InitialCluster(list []Member, selfID uint64, selfName string) string {
	var parts []string
	for _, m := range list {
		name := m.Name
		if m.ID == selfID {
			name = selfName
		}
		if name == "" {
			continue
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// AddRequest asks for a new master's member.
type AddRequest struct {
	Name    string
	PeerURL string
	// ReplaceStale removes a member that holds the name or peer URL but
	// belongs to an old, dead master. Without it such a member is an error.
	ReplaceStale bool
}

// AddResult is what AddLearner did.
type AddResult struct {
	ID uint64
	// InitialCluster is the --initial-cluster the new member starts with.
	InitialCluster string
	// AlreadyPresent means the member had been added before (a re-run).
	AlreadyPresent bool
	// Removed lists the stale members removed first.
	Removed []Member
}

// ErrPending is returned when another member is added but not yet started
// or not yet promoted: adding one more would put quorum at risk.
var ErrPending = errors.New("another member is still joining")

// ErrStale is returned when an old member holds the name or peer URL.
var ErrStale = errors.New("a stale member holds the name or peer URL")

// AddLearner adds the member as a learner unless it is already there, and
// returns its initial cluster. It refuses, without changing anything, when
// another member is pending (added but not started, or a learner not yet
// promoted), and when a stale member holds the name or peer URL unless
// ReplaceStale is set.
func AddLearner(ctx context.Context, cli *clientv3.Client, req AddRequest) (*AddResult, error) {
	if req.Name == "" || req.PeerURL == "" {
		return nil, errors.New("member add needs a name and a peer URL")
	}
	list, err := List(ctx, cli)
	if err != nil {
		return nil, err
	}
	self, stale := Classify(list, req)
	if self != nil {
		return &AddResult{ID: self.ID, AlreadyPresent: true, InitialCluster: InitialCluster(list, self.ID, req.Name)}, nil
	}
	if err := CheckPending(list, stale); err != nil {
		return nil, err
	}
	res := &AddResult{}
	if len(stale) > 0 {
		if !req.ReplaceStale {
			return nil, fmt.Errorf("%w: %s; it belongs to an old master: run again with --replace-stale to remove it first", ErrStale, describe(stale))
		}
		for _, m := range stale {
			err := retryUnhealthy(ctx, func() error { _, err := cli.MemberRemove(ctx, m.ID); return err })
			if err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
				return nil, fmt.Errorf("remove stale member %s: %w", m, err)
			}
			res.Removed = append(res.Removed, m)
		}
	}
	resp, err := addLearnerRetrying(ctx, cli, req.PeerURL)
	if err != nil {
		if errors.Is(err, rpctypes.ErrTooManyLearners) {
			return nil, fmt.Errorf("%w: etcd already has a learner: wait until it is promoted, then retry", ErrPending)
		}
		return nil, fmt.Errorf("etcd member add --learner %s: %w", req.PeerURL, err)
	}
	res.ID = resp.Member.ID
	var after []Member
	for _, m := range resp.Members {
		after = append(after, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner})
	}
	res.InitialCluster = InitialCluster(after, res.ID, req.Name)
	return res, nil
}

// Classify finds the member that already is the requested one (same peer URL,
// and either the same name or no name yet because it never started) and the
// stale members that clash with it (same name or same peer URL otherwise).
func Classify(list []Member, req AddRequest) (self *Member, stale []Member) {
	for i, m := range list {
		switch {
		case m.HasPeerURL(req.PeerURL) && (m.Name == req.Name || m.Name == ""):
			self = &list[i]
		case m.HasPeerURL(req.PeerURL), m.Name == req.Name:
			stale = append(stale, m)
		}
	}
	return self, stale
}

// CheckPending refuses while another member is mid-join: a member added but
// never started, or a learner not yet promoted. Members about to be replaced
// (stale) do not count.
func CheckPending(list []Member, replaced []Member) error {
	skip := map[uint64]bool{}
	for _, m := range replaced {
		skip[m.ID] = true
	}
	voters := 0
	for _, m := range list {
		if !m.Learner {
			voters++
		}
	}
	for _, m := range list {
		if skip[m.ID] {
			continue
		}
		switch {
		case !m.Started() && !m.Learner:
			return fmt.Errorf("%w: voting member %x (peer %s) was added but never started; it already counts toward quorum (%d of %d voters needed), so adding another could stop the cluster: start that master's etcd, or remove the member (etcdctl member remove %x)",
				ErrPending, m.ID, strings.Join(m.PeerURLs, ","), voters/2+1, voters, m.ID)
		case !m.Started():
			return fmt.Errorf("%w: learner %x (peer %s) was added but never started: finish that master's join (run it again there), or remove the member (etcdctl member remove %x)",
				ErrPending, m.ID, strings.Join(m.PeerURLs, ","), m.ID)
		case m.Learner:
			return fmt.Errorf("%w: learner %s is still catching up: wait until it is promoted to a voting member, then retry", ErrPending, m.Name)
		}
	}
	return nil
}

func describe(ms []Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, "member "+m.String())
	}
	return strings.Join(s, ", ")
}

// PromoteReady promotes every started learner that has caught up with the
// leader. Learners still behind are returned in waiting.
func PromoteReady(ctx context.Context, cli *clientv3.Client) (promoted, waiting []Member, err error) {
	list, err := List(ctx, cli)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range list {
		if !m.Learner || !m.Started() {
			continue
		}
		if _, err := cli.MemberPromote(ctx, m.ID); err != nil {
			if errors.Is(err, rpctypes.ErrMemberLearnerNotReady) || errors.Is(err, rpctypes.ErrGRPCLearnerNotReady) ||
				errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrMemberNotEnoughStarted) {
				waiting = append(waiting, m) // behind, or the voters connected too recently: next round
				continue
			}
			if errors.Is(err, rpctypes.ErrMemberNotLearner) {
				continue // promoted meanwhile by someone else
			}
			return promoted, waiting, fmt.Errorf("promote learner %s: %w", m, err)
		}
		m.Learner = false
		promoted = append(promoted, m)
	}
	return promoted, waiting, nil
}

// Missing lists the plan's members that are not yet started voting members
// with the plan's peer URL. Empty means the full membership is reached.
func Missing(p *plan.Plan, list []Member) []string {
	var out []string
	for _, want := range p.Members {
		ok := false
		for _, m := range list {
			if m.Name == want.Name && m.HasPeerURL(want.PeerURL) && m.Started() && !m.Learner {
				ok = true
			}
		}
		if !ok {
			out = append(out, want.Name)
		}
	}
	return out
}

// addLearnerRetrying adds a learner, retrying while etcd refuses for lack
// of connected peers (retryUnhealthy).
func addLearnerRetrying(ctx context.Context, cli *clientv3.Client, peerURL string) (*clientv3.MemberAddResponse, error) {
	var resp *clientv3.MemberAddResponse
	err := retryUnhealthy(ctx, func() error {
		var err error
		resp, err = cli.MemberAddAsLearner(ctx, []string{peerURL})
		return err
	})
	return resp, err
}

// retryUnhealthy repeats a membership change while etcd refuses it for
// lack of connected peers: a member started or promoted less than etcd's
// health interval (5s) ago does not count yet, so a change right after a
// restart or another join meets this for a few seconds.
func retryUnhealthy(ctx context.Context, change func() error) error {
	for {
		err := change()
		if err == nil || !(errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrMemberNotEnoughStarted)) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (still refused when the time ran out)", err)
		case <-time.After(time.Second):
		}
	}
}

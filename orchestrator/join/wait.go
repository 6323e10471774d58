package join

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// Progress is one look at a joining member.
type Progress struct {
	Member members.Member
	// Started, Voting and InSync are the three conditions of a finished join.
	Started, Voting, InSync bool
	// RaftIndex and LeaderRaftIndex show how far a learner caught up.
	RaftIndex, LeaderRaftIndex uint64
	// Revision is where the HashKV values were compared.
	Revision         int64
	Hash, LeaderHash uint32
	// Detail says what is awaited, for the progress line.
	Detail string
}

// Done reports whether the member is started, voting and in sync.
func (p Progress) Done() bool { return p.Started && p.Voting && p.InSync }

// Probe looks once at the member with the peer URL: is it started, a voting
// member, and is its HashKV equal to the leader's at the leader's revision.
func Probe(ctx context.Context, cli *clientv3.Client, peerURL string) (Progress, error) {
	var p Progress
	list, err := members.List(ctx, cli)
	if err != nil {
		return p, err
	}
	var self *members.Member
	for i := range list {
		if list[i].HasPeerURL(peerURL) {
			self = &list[i]
		}
	}
	if self == nil {
		return p, fmt.Errorf("%w: no member with peer URL %s in the cluster; run join again", ErrRemoved, peerURL)
	}
	p.Member = *self
	if !self.Started() || len(self.ClientURLs) == 0 {
		p.Detail = "added; waiting for its etcd to start"
		return p, nil
	}
	p.Started = true
	p.Voting = !self.Learner
	selfURL := self.ClientURLs[0]
	st, err := cli.Status(ctx, selfURL)
	if err != nil {
		p.Detail = fmt.Sprintf("started; its endpoint %s does not answer yet (%v)", selfURL, err)
		return p, nil
	}
	p.RaftIndex = st.RaftIndex
	leaderURL := ""
	for _, m := range list {
		if m.ID == st.Leader && len(m.ClientURLs) > 0 {
			leaderURL = m.ClientURLs[0]
		}
	}
	if leaderURL == "" {
		p.Detail = "started; no leader known yet"
		return p, nil
	}
	lst, err := cli.Status(ctx, leaderURL)
	if err != nil {
		p.Detail = fmt.Sprintf("leader %s does not answer: %v", leaderURL, err)
		return p, nil
	}
	p.LeaderRaftIndex = lst.RaftIndex
	if self.Learner {
		p.Detail = fmt.Sprintf("learner catching up: raft index %d of %d; waiting for promotion", p.RaftIndex, p.LeaderRaftIndex)
		return p, nil
	}
	lh, err := cli.HashKV(ctx, leaderURL, 0)
	if err != nil {
		p.Detail = fmt.Sprintf("leader HashKV: %v", err)
		return p, nil
	}
	p.Revision, p.LeaderHash = lh.Header.Revision, lh.Hash
	sh, err := cli.HashKV(ctx, selfURL, p.Revision)
	if err != nil {
		p.Detail = fmt.Sprintf("voting; HashKV at revision %d not available yet (%v)", p.Revision, err)
		return p, nil
	}
	p.Hash = sh.Hash
	if sh.Hash != lh.Hash || sh.CompactRevision != lh.CompactRevision {
		p.Detail = fmt.Sprintf("voting; HashKV at revision %d is %d, leader's %d", p.Revision, sh.Hash, lh.Hash)
		return p, nil
	}
	p.InSync = true
	p.Detail = fmt.Sprintf("voting, HashKV %d equal to the leader's at revision %d", sh.Hash, p.Revision)
	return p, nil
}

// WaitOptions bounds Wait.
type WaitOptions struct {
	// PeerURL identifies the member.
	PeerURL string
	// Timeout bounds the wait. Default 20 minutes (the runbook's figure for a
	// new member to start).
	Timeout time.Duration
	// Interval between looks. Default 2s.
	Interval time.Duration
	// Promote lets the member promote itself once caught up, in case the
	// signer is gone; etcd refuses a learner that is behind.
	Promote bool
	// Out receives a progress line whenever the state changes.
	Out io.Writer
}

// Wait waits until the member is started, voting and has the leader's
// HashKV, printing progress, or fails when the timeout ends.
func Wait(ctx context.Context, cli *clientv3.Client, o WaitOptions) (Progress, error) {
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Minute
	}
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	last := ""
	var p Progress
	for {
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		p, err = Probe(pctx, cli, o.PeerURL)
		pcancel()
		switch {
		case errors.Is(err, ErrRemoved):
			return p, err
		case err != nil:
			p.Detail = err.Error()
		case p.Done():
			fmt.Fprintf(o.Out, "wait: %s (%s)\n", p.Detail, time.Since(start).Round(time.Second))
			return p, nil
		case p.Started && !p.Voting && o.Promote:
			if _, perr := cli.MemberPromote(ctx, p.Member.ID); perr == nil {
				p.Detail = "promoted to a voting member"
			} else if !errors.Is(perr, rpctypes.ErrMemberLearnerNotReady) && !errors.Is(perr, rpctypes.ErrMemberNotLearner) {
				p.Detail += fmt.Sprintf(" (promote: %v)", perr)
			}
		}
		if p.Detail != last {
			fmt.Fprintf(o.Out, "wait: %s (%s)\n", p.Detail, time.Since(start).Round(time.Second))
			last = p.Detail
		}
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("member not healthy after %s: %s; check its etcd log (crictl logs / journalctl), then run join again", o.Timeout, last)
		case <-time.After(o.Interval):
		}
	}
}

// ErrRemoved means the joining member is no longer in the cluster.
var ErrRemoved = errors.New("member was removed")

func (jn *joiner) waitStep() steps.Step {
	return steps.Step{
		Name: "wait-healthy",
		Describe: func() string {
			t := jn.o.WaitTimeout
			if t == 0 {
				t = 20 * time.Minute
			}
			return fmt.Sprintf("wait up to %s until %s is started, promoted to a voting member and its HashKV equals the leader's", t, jn.m.Name)
		},
		Check: func(ctx context.Context) (steps.State, error) {
			if jn.certsValid() != nil {
				return steps.ToDo, nil
			}
			cli, err := jn.client()
			if err != nil {
				return 0, err
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if p, err := Probe(ctx, cli, jn.m.PeerURL); err == nil && p.Done() {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error {
			cli, err := jn.client()
			if err != nil {
				return err
			}
			_, err = Wait(ctx, cli, WaitOptions{PeerURL: jn.m.PeerURL, Timeout: jn.o.WaitTimeout, Interval: jn.o.WaitInterval, Promote: true, Out: jn.out})
			return err
		},
	}
}

package replay

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
)

// Applied is what Apply left in the copy's backend.
type Applied struct {
	// AppliedIndex is the last raft index the backend holds.
	AppliedIndex uint64
	// Revision is the backend's revision after the apply.
	Revision int64
	// Info is what the backend records after the apply.
	Info *etcddata.Info
}

// Apply, which must follow CommitLog (that empties the v2 requests the
// linked server panics on), starts etcd's server on the data dir copy dir as a forced new
// cluster (the --force-new-cluster of etcd itself), waits until it has
// applied every committed entry of the WAL (after CommitLog: every entry)
// to the backend, and stops it. The server never takes part in an
// election (its election timeout outlasts the apply) and listens on
// nothing, so it proposes nothing of its own: what the backend gains is
// exactly the WAL's entries, and the cluster version the backend records
// is the one the old cluster set, never the linked etcd's own.
//
// progress (may be nil) follows the entries applied of those the backend
// lacks: from its consistent index to until, as the server's applied
// index moves. It is not called when the backend lacks none.
func Apply(ctx context.Context, dir string, until uint64, progress Progress) (a *Applied, err error) {
	var from uint64
	if before, err := etcddata.Read(etcddata.DBPath(dir)); err == nil {
		from = min(before.ConsistentIndex, until)
	}
	cfg := embed.NewConfig()
	cfg.Name = "etcd-rescue-replay"
	cfg.Dir = dir
	cfg.ForceNewCluster = true
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{}, []url.URL{}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{}, []url.URL{}
	cfg.ListenMetricsUrls = nil
	// Ticks of 5 s and the longest election timeout etcd allows: no
	// election (and so no version change) happens while entries apply.
	cfg.TickMs, cfg.ElectionMs = 5000, 50000
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop().WithOptions(zap.WithFatalHook(zapcore.WriteThenPanic)))

	var e *embed.Etcd
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("etcd could not start on the copy %s: %v", dir, p)
			}
		}()
		e, err = embed.StartEtcd(cfg)
	}()
	if err != nil {
		return nil, fmt.Errorf("etcd on the copy %s: %w", dir, err)
	}
	applied, waitErr := waitApplied(ctx, e, until, func(applied uint64) {
		if progress != nil && until > from {
			progress(int64(min(max(applied, from), until)-from), int64(until-from))
		}
	})
	e.Close()
	if waitErr != nil {
		return nil, waitErr
	}
	after, err := etcddata.Read(etcddata.DBPath(dir))
	if err != nil {
		return nil, fmt.Errorf("the backend after applying the WAL: %w", err)
	}
	return &Applied{AppliedIndex: applied, Revision: after.Revision, Info: after}, nil
}

// waitApplied waits until the server has applied index until and every
// entry it committed (the forced new cluster's own configuration changes).
// Every time it looks, it tells progress the applied index.
func waitApplied(ctx context.Context, e *embed.Etcd, until uint64, progress func(applied uint64)) (uint64, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(40 * time.Second)
	for {
		s := e.Server
		applied, committed := s.AppliedIndex(), s.CommittedIndex()
		progress(applied)
		if applied >= until && applied >= committed {
			return applied, nil
		}
		if s.Leader() != 0 {
			return 0, fmt.Errorf("etcd on the copy became leader before it applied the WAL (index %d of %d)", applied, until)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case err := <-e.Err():
			return 0, fmt.Errorf("etcd on the copy stopped at index %d of %d: %w", applied, until, err)
		case <-e.Server.StopNotify():
			return 0, fmt.Errorf("etcd on the copy stopped at index %d of %d", applied, until)
		case <-deadline:
			return 0, fmt.Errorf("etcd on the copy applied index %d of %d in 40 s; the rest did not come", applied, until)
		case <-tick.C:
		}
	}
}

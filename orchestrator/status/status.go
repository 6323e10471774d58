// Package status reports an etcd cluster the way an operator checks it by
// hand during a recovery: the member table of `etcdctl member list -w table`
// joined with each endpoint's health and status (leader, raft index, db
// size), and whether the plan's full membership is reached.
package status

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/boxtable"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// Member is one member and what its endpoint says.
type Member struct {
	members.Member
	// Endpoint is the client URL that was asked.
	Endpoint string
	// Healthy means the endpoint answered, knows a leader and has no errors.
	Healthy   bool
	Leader    bool
	RaftIndex uint64
	RaftTerm  uint64
	DBSize    int64
	Version   string
	// Error is why the endpoint is not healthy.
	Error string
}

// Report is the cluster's state.
type Report struct {
	ClusterID uint64
	LeaderID  uint64
	Members   []Member
}

// Collect lists the members and asks each started member's first client URL
// for its status, each bounded by perEndpoint (default 3s).
func Collect(ctx context.Context, cli *clientv3.Client, perEndpoint time.Duration) (*Report, error) {
	if perEndpoint == 0 {
		perEndpoint = 3 * time.Second
	}
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	list, err := members.List(ctx, cli)
	if err != nil {
		return nil, err
	}
	r := &Report{ClusterID: resp.Header.ClusterId}
	for _, m := range list {
		s := Member{Member: m}
		if len(m.ClientURLs) == 0 {
			s.Error = "not started"
			r.Members = append(r.Members, s)
			continue
		}
		s.Endpoint = m.ClientURLs[0]
		sctx, cancel := context.WithTimeout(ctx, perEndpoint)
		st, err := cli.Status(sctx, s.Endpoint)
		cancel()
		switch {
		case err != nil:
			s.Error = err.Error()
		default:
			s.RaftIndex, s.RaftTerm, s.DBSize, s.Version = st.RaftIndex, st.RaftTerm, st.DbSize, st.Version
			s.Leader = st.Leader == m.ID
			if st.Leader != 0 {
				r.LeaderID = st.Leader
			}
			switch {
			case st.Leader == 0:
				s.Error = "no leader"
			case len(st.Errors) > 0:
				s.Error = strings.Join(st.Errors, "; ")
			default:
				s.Healthy = true
			}
		}
		r.Members = append(r.Members, s)
	}
	return r, nil
}

// Check reports what keeps the cluster from the plan's full membership:
// missing, unstarted or learner members, and unhealthy endpoints.
func (r *Report) Check(p *plan.Plan) error {
	var list []members.Member
	var problems []string
	for _, m := range r.Members {
		list = append(list, m.Member)
		if m.Started() && !m.Healthy {
			problems = append(problems, fmt.Sprintf("%s is unhealthy (%s)", m.Name, m.Error))
		}
	}
	if p != nil {
		if miss := members.Missing(p, list); len(miss) > 0 {
			problems = append([]string{fmt.Sprintf("%d of %d planned members are started voting members; not yet: %s",
				len(p.Members)-len(miss), len(p.Members), strings.Join(miss, ", "))}, problems...)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("cluster below its planned membership: %s", strings.Join(problems, "; "))
	}
	return nil
}

// WriteTable prints the member table, etcdctl style.
func (r *Report) WriteTable(w io.Writer) {
	head := []string{"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER", "LEADER", "RAFT INDEX", "DB SIZE", "HEALTH"}
	rows := [][]string{head}
	for _, m := range r.Members {
		status := "started"
		if !m.Started() {
			status = "unstarted"
		}
		health := "healthy"
		if !m.Healthy {
			health = "unhealthy: " + m.Error
		}
		idx, size := "", ""
		if m.Healthy || m.RaftIndex > 0 {
			idx, size = strconv.FormatUint(m.RaftIndex, 10), humanBytes(m.DBSize)
		}
		rows = append(rows, []string{
			fmt.Sprintf("%x", m.ID), status, m.Name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","),
			strconv.FormatBool(m.Learner), strconv.FormatBool(m.Leader), idx, size, health,
		})
	}
	boxtable.Write(w, rows)
	fmt.Fprintf(w, "cluster %x, leader %x, %d members\n", r.ClusterID, r.LeaderID, len(r.Members))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

package survey

import (
	"errors"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
)

// Backend is what an etcd backend file (a data dir's member/snap/db, or a
// snapshot) records about how far it got.
type Backend struct {
	Path string `json:"path"`
	// Revision is the highest revision the backend holds (its newest key
	// revision, or the compaction point if that is later).
	Revision int64 `json:"revision"`
	// ConsistentIndex is the last raft index applied to the backend.
	ConsistentIndex uint64 `json:"consistentIndex"`
	// Term is the raft term of ConsistentIndex (etcd 3.5+; 0 before).
	Term uint64 `json:"term,omitempty"`
	// Members are the members the backend records (etcd 3.4+ keeps them
	// there; older backends have none). The source's members, which add
	// the WAL's changes, are the ones printed.
	Members []Member `json:"-"`
	// ClusterVersion (etcd 3.5+) and StorageVersion (etcd 3.6+) are the
	// versions the backend records, "" when it records none.
	ClusterVersion string `json:"clusterVersion,omitempty"`
	StorageVersion string `json:"storageVersion,omitempty"`
}

// Member is a cluster member as a backend or WAL records it.
type Member struct {
	ID        ID       `json:"id"`
	Name      string   `json:"name,omitempty"`
	PeerURLs  []string `json:"peerURLs,omitempty"`
	IsLearner bool     `json:"isLearner,omitempty"`
}

// Version is the newest etcd version the backend records, or "".
func (b *Backend) Version() string {
	if b.StorageVersion != "" {
		return b.StorageVersion
	}
	return b.ClusterVersion
}

// readBackend reads a backend file's progress offline through etcddata
// (read-only; a damaged or truncated file is an error naming it, never a
// crash).
func readBackend(path string) (*Backend, error) {
	info, err := etcddata.Read(path)
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%s is locked: etcd still runs on it; stop it first (the survey reads offline)", path)
	}
	if err != nil {
		return nil, err
	}
	b := &Backend{
		Path: path,
		// etcd's revisions start at 1, before any write, and its current
		// revision is at least the compaction point.
		Revision:        max(1, info.Revision, info.CompactRevision),
		ConsistentIndex: info.ConsistentIndex,
		Term:            info.Term,
		ClusterVersion:  info.ClusterVersion,
		StorageVersion:  info.StorageVersion,
	}
	for _, m := range info.Members {
		b.Members = append(b.Members, Member{ID: ID(m.ID), Name: m.Name, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner})
	}
	sortMembers(b.Members)
	return b, nil
}

func sortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
}

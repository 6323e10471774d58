package survey

// What committed WAL entries hold beyond the backend: the writes (which
// bound the revision), the membership changes and the cluster version.

import (
	"encoding/json"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Writes counts the write requests in committed WAL entries: Certain ones
// always add a revision (a plain put), Possible ones add one when they
// succeed (a transaction whose compare may fail, a delete of a key that
// may not exist, a put bound to a lease, a lease revoke).
type Writes struct {
	Certain  int `json:"certain"`
	Possible int `json:"possible"`
}

// writesBetween counts the writes in entries (after, upto].
func (w *WAL) writesBetween(after, upto uint64) Writes {
	var n Writes
	for _, e := range w.entries {
		if e.GetIndex() <= after || e.GetIndex() > upto || e.GetType() != raftpb.EntryType_EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		var r pb.InternalRaftRequest
		// etcd v3 requests carry a header; v2 requests (member
		// attributes in etcd 3.4 and older) do not and write no revision.
		if proto.Unmarshal(e.GetData(), &r) != nil || r.Header == nil {
			continue
		}
		switch {
		case r.Put != nil && r.Put.Lease == 0 && !r.Put.IgnoreValue && !r.Put.IgnoreLease:
			n.Certain++
		case r.Put != nil, r.DeleteRange != nil, r.LeaseRevoke != nil, r.Txn != nil && txnWrites(r.Txn):
			n.Possible++
		}
	}
	return n
}

// txnWrites says whether either branch of a transaction writes.
func txnWrites(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			switch {
			case op.GetRequestPut() != nil, op.GetRequestDeleteRange() != nil:
				return true
			case op.GetRequestTxn() != nil && txnWrites(op.GetRequestTxn()):
				return true
			}
		}
	}
	return false
}

// members applies the membership changes committed in entries
// (after, upto] to base: the members a restore from them would know. With
// no base (a backend that never committed them), it starts from the raft
// snapshot's configuration, which records member IDs only.
func (w *WAL) members(base []Member, after, upto uint64) []Member {
	byID := map[ID]Member{}
	for _, m := range base {
		byID[m.ID] = m
	}
	if len(base) == 0 {
		for _, id := range w.snapshotMembers {
			byID[id] = Member{ID: id}
		}
	}
	for _, e := range w.entries {
		if e.GetIndex() <= after || e.GetIndex() > upto {
			continue
		}
		switch e.GetType() {
		case raftpb.EntryType_EntryConfChange:
			var cc raftpb.ConfChange
			if proto.Unmarshal(e.GetData(), &cc) != nil {
				continue
			}
			switch cc.GetType() {
			case raftpb.ConfChangeType_ConfChangeRemoveNode:
				delete(byID, ID(cc.GetNodeId()))
			default: // add, add as learner, update: the context is the member
				var m Member
				if json.Unmarshal(cc.GetContext(), &m) == nil && m.ID != 0 {
					if m.Name == "" {
						m.Name = byID[m.ID].Name
					}
					byID[m.ID] = m
				}
			}
		case raftpb.EntryType_EntryNormal:
			var r pb.InternalRaftRequest
			if proto.Unmarshal(e.GetData(), &r) != nil || r.ClusterMemberAttrSet == nil {
				continue
			}
			if m, ok := byID[ID(r.ClusterMemberAttrSet.Member_ID)]; ok {
				m.Name = r.ClusterMemberAttrSet.GetMemberAttributes().GetName()
				byID[m.ID] = m
			}
		}
	}
	out := make([]Member, 0, len(byID))
	for _, m := range byID {
		out = append(out, m)
	}
	sortMembers(out)
	return out
}

// clusterVersion is the last cluster version set in entries (after,
// upto] (etcd 3.5+ records it there), or "".
func (w *WAL) clusterVersion(after, upto uint64) string {
	v := ""
	for _, e := range w.entries {
		if e.GetIndex() <= after || e.GetIndex() > upto || e.GetType() != raftpb.EntryType_EntryNormal {
			continue
		}
		var r pb.InternalRaftRequest
		if proto.Unmarshal(e.GetData(), &r) == nil && r.ClusterVersionSet != nil {
			v = r.ClusterVersionSet.GetVer()
		}
	}
	return v
}

package restore

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/config"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/etcdserver/cindex"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/etcd/server/v3/verify"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// inPlace is what etcdutl snapshot restore (go.etcd.io/etcd/etcdutl/v3
// snapshot, v3Manager.Restore) writes into a new data dir, made on a db
// file already copied and checked at <DataDir>/member/snap/db instead of on
// a copy of its own: etcdutl copies the snapshot, hashes the copy, and opens
// it four times, each open walking every page to rebuild bbolt's free list.
// Here the backend is opened once, and every edit is etcd's own code, in
// etcdutl's order.
type inPlace struct {
	DataDir             string
	Name                string
	PeerURL             string
	InitialCluster      string
	InitialClusterToken string
	// LatestRevision is the snapshot's highest main revision (etcdutl
	// finds it by walking the key bucket; the structure check found it).
	LatestRevision int64
	// RevisionBump > 0 raises the revision and marks it compacted.
	RevisionBump int64
}

func (c inPlace) dbPath() string  { return filepath.Join(c.snapDir(), "db") }
func (c inPlace) snapDir() string { return filepath.Join(c.DataDir, "member", "snap") }
func (c inPlace) walDir() string  { return filepath.Join(c.DataDir, "member", "wal") }

// run makes the edits. A panic inside etcd's code (a backend that cannot
// be opened is one) comes back as an error naming the db file.
func (c inPlace) run(lg *zap.Logger) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("etcd snapshot restore on %s: %v", c.dbPath(), p)
		}
	}()
	cl, err := c.cluster(lg)
	if err != nil {
		return err
	}
	if _, err := os.Stat(c.dbPath()); err != nil {
		return err
	}
	if fileutil.Exist(c.walDir()) {
		return fmt.Errorf("wal-dir %q exists", c.walDir())
	}
	be, err := openBoltBackend(c.dbPath())
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			be.Close()
		}
	}()
	// saveDB: the old cluster's members go.
	if err := schema.NewMembershipBackend(lg, be).TrimMembershipFromBackend(); err != nil {
		return err
	}
	// modifyLatestRevision: the bump and the compaction mark.
	if c.RevisionBump > 0 {
		tx := be.BatchTx()
		tx.LockOutsideApply()
		latest := mvcc.Revision{Main: c.LatestRevision + c.RevisionBump}
		tx.UnsafePut(schema.Key, mvcc.RevToBytes(latest, mvcc.NewRevBytes()), []byte{})
		mvcc.UnsafeSetScheduledCompact(tx, latest.Main)
		tx.Unlock()
		be.ForceCommit()
	}
	// saveWALAndSnap: the new members, the WAL and the raft snapshot.
	hs, err := c.saveWALAndSnap(lg, be, cl)
	if err != nil {
		return err
	}
	// updateCIndex.
	cindex.UpdateConsistentIndexForce(be.BatchTx(), hs.GetCommit(), hs.GetTerm())
	closed = true
	if err := be.Close(); err != nil {
		return fmt.Errorf("close %s: %w", c.dbPath(), err)
	}
	return verify.VerifyIfEnabled(verify.Config{ExactIndex: true, Logger: lg, DataDir: c.DataDir})
}

// cluster is the new one-member cluster, checked as etcdutl checks it.
func (c inPlace) cluster(lg *zap.Logger) (*membership.RaftCluster, error) {
	pURLs, err := types.NewURLs([]string{c.PeerURL})
	if err != nil {
		return nil, err
	}
	ics, err := types.NewURLsMap(c.InitialCluster)
	if err != nil {
		return nil, err
	}
	srv := config.ServerConfig{
		Logger:              lg,
		Name:                c.Name,
		PeerURLs:            pURLs,
		InitialPeerURLsMap:  ics,
		InitialClusterToken: c.InitialClusterToken,
	}
	if err := srv.VerifyBootstrap(); err != nil {
		return nil, err
	}
	return membership.NewClusterFromURLsMap(lg, c.InitialClusterToken, ics)
}

// saveWALAndSnap is etcdutl's, on the open backend.
func (c inPlace) saveWALAndSnap(lg *zap.Logger, be backend.Backend, cl *membership.RaftCluster) (*raftpb.HardState, error) {
	if err := fileutil.CreateDirAll(lg, c.walDir()); err != nil {
		return nil, err
	}
	cl.SetBackend(schema.NewMembershipBackend(lg, be))
	for _, m := range cl.Members() {
		cl.AddMember(m, true)
	}
	m := cl.MemberByName(c.Name)
	if m == nil {
		return nil, fmt.Errorf("member %s is not in the initial cluster %s", c.Name, c.InitialCluster)
	}
	md := &etcdserverpb.Metadata{NodeID: new(uint64(m.ID)), ClusterID: new(uint64(cl.ID()))}
	metadata, err := proto.Marshal(md)
	if err != nil {
		return nil, err
	}
	w, err := wal.Create(lg, c.walDir(), metadata)
	if err != nil {
		return nil, err
	}
	defer w.Close()

	ids := cl.MemberIDs()
	peers := make([]raft.Peer, len(ids))
	for i, id := range ids {
		ctx, err := json.Marshal(cl.Member(id))
		if err != nil {
			return nil, err
		}
		peers[i] = raft.Peer{ID: uint64(id), Context: ctx}
	}
	ents := make([]*raftpb.Entry, len(peers))
	nodeIDs := make([]uint64, len(peers))
	for i, p := range peers {
		nodeIDs[i] = p.ID
		cc := raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(p.ID), Context: p.Context}
		d, err := proto.Marshal(&cc)
		if err != nil {
			return nil, err
		}
		ents[i] = &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Term: new(uint64(1)), Index: new(uint64(i + 1)), Data: d}
	}
	commit, term := uint64(len(ents)), uint64(1)
	hs := raftpb.HardState{Term: new(term), Vote: new(peers[0].ID), Commit: new(commit)}
	if err := w.Save(&hs, ents); err != nil {
		return nil, err
	}
	confState := &raftpb.ConfState{Voters: nodeIDs}
	raftSnap := raftpb.Snapshot{
		Data:     etcdserver.GetMembershipInfoInV2Format(lg, cl),
		Metadata: &raftpb.SnapshotMetadata{Index: new(commit), Term: new(term), ConfState: confState},
	}
	if err := snap.New(lg, c.snapDir()).SaveSnap(&raftSnap); err != nil {
		return nil, err
	}
	return &hs, w.SaveSnapshot(&walpb.Snapshot{Index: new(commit), Term: new(term), ConfState: confState})
}

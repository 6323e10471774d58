package survey

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
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

// boltTimeout bounds the wait for bbolt's file lock: a running etcd holds
// it exclusively, and the survey reads stopped members only.
const boltTimeout = 5 * time.Second

// readBackend opens a backend file read-only (bbolt never writes to a file
// opened so) and reads its progress. A panic inside bbolt on a damaged file
// becomes an error naming the file, and so does a fault on a page bbolt
// maps past the end of a file cut short (SetPanicOnFault turns it into a
// panic of this goroutine).
func readBackend(path string) (b *Backend, err error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("%s is damaged: bbolt: %v", path, p)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: boltTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%s is locked: etcd still runs on it; stop it first (the survey reads offline)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	b = &Backend{Path: path}
	err = db.View(func(tx *bolt.Tx) error {
		keys := tx.Bucket([]byte("key"))
		if keys == nil {
			return errors.New("no key bucket: not an etcd v3 backend")
		}
		b.Revision = 1 // etcd's revisions start at 1, before any write
		if k, _ := keys.Cursor().Last(); len(k) >= 8 {
			b.Revision = max(b.Revision, int64(binary.BigEndian.Uint64(k[:8])))
		}
		if meta := tx.Bucket([]byte("meta")); meta != nil {
			b.ConsistentIndex = uint64At(meta.Get([]byte("consistent_index")))
			b.Term = uint64At(meta.Get([]byte("term")))
			b.StorageVersion = string(meta.Get([]byte("storageVersion")))
			// etcd restores its current revision as at least the
			// compaction point: a compaction can remove the newest key.
			b.Revision = max(b.Revision, int64(uint64At(meta.Get([]byte("finishedCompactRev")))))
		}
		if c := tx.Bucket([]byte("cluster")); c != nil {
			b.ClusterVersion = string(c.Get([]byte("clusterVersion")))
		}
		if ms := tx.Bucket([]byte("members")); ms != nil {
			return ms.ForEach(func(_, v []byte) error {
				var m Member
				if err := json.Unmarshal(v, &m); err != nil {
					return fmt.Errorf("member record %q: %w", v, err)
				}
				b.Members = append(b.Members, m)
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	sortMembers(b.Members)
	return b, nil
}

// uint64At decodes etcd's big-endian numbers; revisions are stored as
// 8 bytes of main revision followed by a sub revision.
func uint64At(v []byte) uint64 {
	if len(v) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v[:8])
}

func sortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
}

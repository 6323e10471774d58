// Package etcddata reads facts from an etcd data dir or snapshot offline,
// with bbolt in read-only mode: the members it last knew and the highest
// revision it holds. The restore uses them to refuse while old members
// still answer, and to bump the revision past anything clients have seen.
package etcddata

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DBPath returns the backend file of a data dir.
func DBPath(dataDir string) string { return filepath.Join(dataDir, "member", "snap", "db") }

// Member is a member as the backend records it.
type Member struct {
	ID        uint64   `json:"id"`
	Name      string   `json:"name"`
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner,omitempty"`
}

// Info is what a backend file tells.
type Info struct {
	// Revision is the highest main revision in the key bucket.
	Revision int64
	// Members are the cluster members recorded in the backend (etcd 3.5+
	// keeps them there; older data dirs may have none).
	Members []Member
	// ClusterVersion is the cluster version the backend records (etcd
	// 3.5+ writes it; "" before), like "3.5.0".
	ClusterVersion string
	// StorageVersion is the storage schema version (etcd 3.6+; "" before).
	StorageVersion string
	// ConsistentIndex is the last raft index applied to the backend, Term
	// its raft term (etcd 3.5+; 0 before).
	ConsistentIndex, Term uint64
	// CompactRevision is the revision of the last finished compaction (0
	// when none): etcd's current revision is at least this, since a
	// compaction can remove the newest key.
	CompactRevision int64
}

// WrittenBy is the newest etcd version the backend records, or "" when it
// records none (etcd 3.4 and older).
func (i *Info) WrittenBy() string {
	if i.StorageVersion != "" {
		return i.StorageVersion
	}
	return i.ClusterVersion
}

// Read's errors besides fs.ErrNotExist (no file at all). Both mean the
// caller cannot learn the old revision or members from this file: a restore
// takes the default revision bump and says why, it does not stop.
var (
	// ErrNotEtcd is a readable bbolt file that is not an etcd backend.
	ErrNotEtcd = errors.New("not an etcd data dir")
	// ErrDamaged is a file bbolt cannot read: truncated, overwritten, empty.
	ErrDamaged = errors.New("damaged etcd backend")
)

// Read opens a backend file read-only and reads its revision, members and
// the versions it records. A damaged file is an error wrapping ErrDamaged
// and naming the file, never a crash: bbolt panics, and faults on its
// memory map of a truncated file, are recovered here.
func Read(dbPath string) (info *Info, err error) {
	fi, err := os.Stat(dbPath)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrNotEtcd, dbPath)
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrDamaged, dbPath)
	}
	// bbolt reads through a memory map; a page past the end of a truncated
	// file is a fault, which only becomes a recoverable panic with this set.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			info, err = nil, fmt.Errorf("%w: reading %s failed (%v): the file is damaged", ErrDamaged, dbPath, p)
		}
	}()
	db, err := bolt.Open(dbPath, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (is etcd still running on it?)", dbPath, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %v", ErrDamaged, dbPath, err)
	}
	defer db.Close()
	info = &Info{}
	err = db.View(func(tx *bolt.Tx) error {
		// A file shorter than its own high-water mark lost pages: whether
		// or not this read touches them, the backend is damaged.
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%w: %s is %d bytes, shorter than the %d its meta page records: the file was truncated", ErrDamaged, dbPath, fi.Size(), tx.Size())
		}
		return readTx(tx, dbPath, info)
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(info.Members, func(i, j int) bool { return info.Members[i].Name < info.Members[j].Name })
	return info, nil
}

func readTx(tx *bolt.Tx, dbPath string, info *Info) error {
	b := tx.Bucket([]byte("key"))
	if b == nil {
		return fmt.Errorf("%w: no key bucket in %s", ErrNotEtcd, dbPath)
	}
	if k, _ := b.Cursor().Last(); len(k) >= 8 {
		info.Revision = int64(binary.BigEndian.Uint64(k[:8]))
	}
	if b := tx.Bucket([]byte("cluster")); b != nil {
		info.ClusterVersion = string(b.Get([]byte("clusterVersion")))
	}
	if b := tx.Bucket([]byte("meta")); b != nil {
		info.StorageVersion = string(b.Get([]byte("storageVersion")))
		info.ConsistentIndex = uint64At(b.Get([]byte("consistent_index")))
		info.Term = uint64At(b.Get([]byte("term")))
		info.CompactRevision = int64(uint64At(b.Get([]byte("finishedCompactRev"))))
	}
	if b := tx.Bucket([]byte("members")); b != nil {
		return b.ForEach(func(k, v []byte) error {
			var m Member
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("%w: member record %x in %s: %v", ErrDamaged, k, dbPath, err)
			}
			info.Members = append(info.Members, m)
			return nil
		})
	}
	return nil
}

// uint64At decodes etcd's big-endian numbers; a revision key is 8 bytes
// of main revision followed by a sub revision. Shorter values are 0.
func uint64At(v []byte) uint64 {
	if len(v) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v[:8])
}

// CheckNotRunning refuses a data dir an etcd is running on (see InUse);
// todo says what the user should do about it.
func CheckNotRunning(dataDir, todo string) error {
	busy, err := InUse(DBPath(dataDir))
	if err != nil {
		return err
	}
	if busy {
		return fmt.Errorf("etcd is running on %s (it holds the lock of member/snap/db): %s", dataDir, todo)
	}
	return nil
}

// InUse reports whether a process (a running etcd) holds the backend
// file's lock. etcd holds an exclusive flock on member/snap/db while it runs.
func InUse(dbPath string) (bool, error) {
	f, err := os.Open(dbPath)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

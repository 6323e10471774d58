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
}

// WrittenBy is the newest etcd version the backend records, or "" when it
// records none (etcd 3.4 and older).
func (i *Info) WrittenBy() string {
	if i.StorageVersion != "" {
		return i.StorageVersion
	}
	return i.ClusterVersion
}

// Read opens a backend file read-only and reads its revision, members and
// the versions it records.
func Read(dbPath string) (*Info, error) {
	if _, err := os.Stat(dbPath); err != nil {
		return nil, err
	}
	db, err := bolt.Open(dbPath, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w (is etcd still running on it?)", dbPath, err)
	}
	defer db.Close()
	info := &Info{}
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("key")); b != nil {
			if k, _ := b.Cursor().Last(); len(k) >= 8 {
				info.Revision = int64(binary.BigEndian.Uint64(k[:8]))
			}
		} else {
			return errors.New("no key bucket: not an etcd v3 backend")
		}
		if b := tx.Bucket([]byte("cluster")); b != nil {
			info.ClusterVersion = string(b.Get([]byte("clusterVersion")))
		}
		if b := tx.Bucket([]byte("meta")); b != nil {
			info.StorageVersion = string(b.Get([]byte("storageVersion")))
		}
		if b := tx.Bucket([]byte("members")); b != nil {
			return b.ForEach(func(_, v []byte) error {
				var m Member
				if err := json.Unmarshal(v, &m); err != nil {
					return fmt.Errorf("member record: %w", err)
				}
				info.Members = append(info.Members, m)
				return nil
			})
		}
		return nil
	})
	sort.Slice(info.Members, func(i, j int) bool { return info.Members[i].Name < info.Members[j].Name })
	return info, err
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

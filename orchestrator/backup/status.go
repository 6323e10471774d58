package backup

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/maphash"

	"github.com/coreos/go-semver/semver"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/boltcheck"
)

// statusSum computes etcdutl's snapshot status (v3.7) from the structure
// check's walk instead of a second pass over bbolt's mmap: the crc32c of
// every top-level bucket's name, keys and values in key order, the last
// revision, the number of live keys (keys whose last revision is not a
// deletion), and the storage version in the "meta" bucket.
type statusSum struct {
	crc     hash.Hash32
	seed    maphash.Seed
	live    map[uint64]struct{}
	version string
}

func newStatusSum() *statusSum {
	return &statusSum{crc: crc32.New(crc32.MakeTable(crc32.Castagnoli)), seed: maphash.MakeSeed(), live: map[uint64]struct{}{}}
}

// etcd's schema: the bucket of revisions and where the storage version is.
var (
	keyBucket      = []byte("key")
	metaBucket     = []byte("meta")
	storageVersion = []byte("storageVersion")
)

// add is boltcheck's Options.Values. Live keys are counted by a 64-bit
// hash of each key, so memory follows the number of keys (16 bytes each),
// not their size; two keys sharing a hash (odds under 1e-7 at a million
// keys) would count once.
func (s *statusSum) add(bucket, key, value []byte) error {
	if key == nil {
		s.crc.Write(bucket)
		return nil
	}
	s.crc.Write(key)
	s.crc.Write(value)
	switch {
	case bytes.Equal(bucket, keyBucket):
		k, err := keyOf(value)
		if err != nil {
			return fmt.Errorf("its value is not an etcd key-value: %w", err)
		}
		// The key was checked to be a revision: a 't' at its end marks a
		// deletion.
		h := maphash.Bytes(s.seed, k)
		if len(key) == 18 && key[17] == 't' {
			delete(s.live, h)
		} else {
			s.live[h] = struct{}{}
		}
	case bytes.Equal(bucket, metaBucket) && bytes.Equal(key, storageVersion):
		if v, err := semver.NewVersion(string(value)); err == nil {
			s.version = v.String()
		}
	}
	return nil
}

// keyOf returns field 1 (the key) of an mvccpb.KeyValue, checking that
// the whole value is well-formed protobuf.
func keyOf(b []byte) ([]byte, error) {
	var key []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			key, b = v, b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	if key == nil {
		return nil, errors.New("it has no key")
	}
	return key, nil
}

func (s *statusSum) status(r *boltcheck.Report) snapshot.Status {
	return snapshot.Status{
		Hash:      s.crc.Sum32(),
		Revision:  r.MaxRevision,
		TotalKey:  len(s.live),
		TotalSize: int64(r.Pages) * int64(r.PageSize),
		Version:   s.version,
	}
}

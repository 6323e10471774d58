package restore

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sync"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/backend"
)

// boltBackend is the part of etcd's backend.Backend that etcd's restore
// edits call (one batch transaction, its commits, close), over a bbolt
// database opened without MAP_POPULATE. etcd's own backend maps the file
// with MAP_POPULATE (storage/backend/config_linux.go), which reads every
// page in and counts it in the process's resident memory, while the edits
// touch a few pages: here the restore's memory does not follow the
// snapshot's size, and the populate's time is saved.
//
// The methods the edits do not call (Snapshot, Hash, Defrag …) are the
// embedded nil interface's: calling one panics, which inPlace.run turns
// into an error naming the db file.
type boltBackend struct {
	backend.Backend
	db *bolt.DB
	tx *boltBatchTx
}

// openBoltBackend opens path for the edits. Its free list is read from the
// file (the staging step wrote it), so the open reads no other page; the
// commits write it again, as etcdutl's do not.
func openBoltBackend(path string) (*boltBackend, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	tx, err := db.Begin(true)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &boltBackend{db: db, tx: &boltBatchTx{db: db, tx: tx}}, nil
}

func (b *boltBackend) BatchTx() backend.BatchTx { return b.tx }
func (b *boltBackend) ReadTx() backend.ReadTx   { return b.tx }

// ForceCommit commits the edits so far and begins the next transaction.
func (b *boltBackend) ForceCommit() { b.tx.Commit() }

// Close commits the last edits (bbolt fsyncs the file) and closes the file.
func (b *boltBackend) Close() error {
	err := b.tx.commit(false)
	return errors.Join(err, b.db.Close())
}

// boltBatchTx is etcd's batch transaction over one bbolt write
// transaction. etcd's would panic on a bbolt error; this one does too, and
// inPlace.run names the file.
type boltBatchTx struct {
	mu sync.Mutex
	db *bolt.DB
	tx *bolt.Tx
}

func (t *boltBatchTx) Lock()             { t.mu.Lock() }
func (t *boltBatchTx) Unlock()           { t.mu.Unlock() }
func (t *boltBatchTx) LockInsideApply()  { t.mu.Lock() }
func (t *boltBatchTx) LockOutsideApply() { t.mu.Lock() }
func (t *boltBatchTx) RLock()            { t.mu.Lock() }
func (t *boltBatchTx) RUnlock()          { t.mu.Unlock() }

// Commit commits and begins a new write transaction; CommitAndStop only
// commits. etcd's callers hold the lock around neither.
func (t *boltBatchTx) Commit() {
	if err := t.commit(true); err != nil {
		panic(err)
	}
}

func (t *boltBatchTx) CommitAndStop() {
	if err := t.commit(false); err != nil {
		panic(err)
	}
}

func (t *boltBatchTx) commit(again bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tx == nil {
		return nil
	}
	err := t.tx.Commit()
	t.tx = nil
	if err != nil || !again {
		return err
	}
	t.tx, err = t.db.Begin(true)
	return err
}

func (t *boltBatchTx) bucket(b backend.Bucket) *bolt.Bucket {
	bk := t.tx.Bucket(b.Name())
	if bk == nil {
		panic(fmt.Sprintf("bucket %s does not exist", b))
	}
	return bk
}

func (t *boltBatchTx) UnsafeCreateBucket(b backend.Bucket) {
	if _, err := t.tx.CreateBucket(b.Name()); err != nil && !errors.Is(err, bolt.ErrBucketExists) {
		panic(fmt.Sprintf("create bucket %s: %v", b, err))
	}
}

func (t *boltBatchTx) UnsafeDeleteBucket(b backend.Bucket) {
	if err := t.tx.DeleteBucket(b.Name()); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		panic(fmt.Sprintf("delete bucket %s: %v", b, err))
	}
}

func (t *boltBatchTx) UnsafePut(b backend.Bucket, key, value []byte) { t.put(b, key, value, false) }

// UnsafeSeqPut fills pages fuller, as etcd's does: keys put in order are
// never inserted between.
func (t *boltBatchTx) UnsafeSeqPut(b backend.Bucket, key, value []byte) { t.put(b, key, value, true) }

func (t *boltBatchTx) put(b backend.Bucket, key, value []byte, seq bool) {
	bk := t.bucket(b)
	if seq {
		bk.FillPercent = 0.9
	}
	if err := bk.Put(key, value); err != nil {
		panic(fmt.Sprintf("put in bucket %s: %v", b, err))
	}
}

func (t *boltBatchTx) UnsafeDelete(b backend.Bucket, key []byte) {
	if err := t.bucket(b).Delete(key); err != nil {
		panic(fmt.Sprintf("delete from bucket %s: %v", b, err))
	}
}

// UnsafeRange is etcd's: with no end key, the one key; else the keys from
// key up to endKey, at most limit (≤ 0: no limit).
func (t *boltBatchTx) UnsafeRange(b backend.Bucket, key, endKey []byte, limit int64) (keys, vals [][]byte) {
	bk := t.tx.Bucket(b.Name())
	if bk == nil {
		return nil, nil
	}
	if limit <= 0 {
		limit = math.MaxInt64
	}
	match := func(k []byte) bool { return bytes.Compare(k, endKey) < 0 }
	if len(endKey) == 0 {
		match = func(k []byte) bool { return bytes.Equal(k, key) }
		limit = 1
	}
	c := bk.Cursor()
	for k, v := c.Seek(key); k != nil && match(k); k, v = c.Next() {
		keys, vals = append(keys, k), append(vals, v)
		if int64(len(keys)) == limit {
			break
		}
	}
	return keys, vals
}

// UnsafeForEach visits a copy of the bucket's pairs: etcd's trimming of
// the members deletes each key it visits, which a bbolt cursor walking the
// same leaf would skip past.
func (t *boltBatchTx) UnsafeForEach(b backend.Bucket, visit func(k, v []byte) error) error {
	bk := t.tx.Bucket(b.Name())
	if bk == nil {
		return nil
	}
	var pairs [][2][]byte
	if err := bk.ForEach(func(k, v []byte) error {
		pairs = append(pairs, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
		return nil
	}); err != nil {
		return err
	}
	for _, p := range pairs {
		if err := visit(p[0], p[1]); err != nil {
			return err
		}
	}
	return nil
}

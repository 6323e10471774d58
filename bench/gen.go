package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
)

// snapshotOfSize returns a cached etcd snapshot of about size bytes, made
// the first time: a real snapshot of a small embedded etcd, grown with
// Kubernetes-shaped revisions (keys /registry/<resource>/<ns>/<name>,
// values of 1–16 KiB, a third of them updates of earlier keys) written
// straight into its bbolt key bucket, then given etcd's sha256 trailer.
func snapshotOfSize(dir string, size int64) (string, error) {
	out := filepath.Join(dir, fmt.Sprintf("snapshot-%dMiB.db", size>>20))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base, err := baseSnapshot(dir)
	if err != nil {
		return "", err
	}
	tmp := out + ".part"
	if err := atomicfile.CopyFile(base, tmp, 0o644); err != nil {
		return "", err
	}
	if err := os.Truncate(tmp, fileSize(tmp)-sha256.Size); err != nil {
		return "", err
	}
	if err := grow(tmp, size); err != nil {
		return "", err
	}
	if err := appendTrailer(tmp); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// baseSnapshot takes a snapshot of a fresh embedded etcd with a few keys.
func baseSnapshot(dir string) (string, error) {
	p := filepath.Join(dir, "base.db")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	data, err := os.MkdirTemp(dir, "etcd-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(data)
	cfg := embed.NewConfig()
	cfg.Dir = data
	cfg.LogLevel = "fatal"
	cfg.QuotaBackendBytes = 16 << 30
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", err
	}
	defer e.Close()
	<-e.Server.ReadyNotify()
	ep := e.Clients[0].Addr().String()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, Logger: zap.NewNop()})
	if err != nil {
		return "", err
	}
	for i := 0; i < 100; i++ {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("/registry/namespaces/ns-%d", i), "{}"); err != nil {
			return "", err
		}
	}
	cli.Close()
	_, err = snapshot.SaveWithVersion(context.Background(), zap.NewNop(), clientv3.Config{Endpoints: []string{ep}}, p)
	return p, err
}

var resources = []string{"pods", "configmaps", "secrets", "events", "deployments", "replicasets", "services", "endpointslices", "leases"}

func grow(path string, size int64) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, InitialMmapSize: int(size + size/4)})
	if err != nil {
		return err
	}
	defer db.Close()
	var rev int64
	if err := db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket([]byte("key")).Cursor().Last()
		rev = int64(binary.BigEndian.Uint64(k[:8]))
		return nil
	}); err != nil {
		return err
	}
	rng := rand.New(rand.NewSource(1))
	payload := make([]byte, 16<<10)
	rng.Read(payload)
	type obj struct{ create, version int64 }
	var keys []string
	objs := map[string]*obj{}
	start := time.Now()
	for fileSize(path) < size {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("key"))
			b.FillPercent = 1 // revisions only ever append
			for i := 0; i < 20000; i++ {
				rev++
				var key string
				if len(keys) > 0 && rng.Intn(3) == 0 {
					key = keys[rng.Intn(len(keys))]
				} else {
					key = fmt.Sprintf("/registry/%s/ns-%d/obj-%d", resources[rng.Intn(len(resources))], rng.Intn(200), len(keys))
					keys = append(keys, key)
					objs[key] = &obj{create: rev}
				}
				o := objs[key]
				o.version++
				n := 1<<10 + rng.Intn(15<<10)
				kv := &mvccpb.KeyValue{Key: []byte(key), Value: payload[:n], CreateRevision: o.create, ModRevision: rev, Version: o.version}
				v, err := proto.Marshal(kv)
				if err != nil {
					return err
				}
				k := make([]byte, 17)
				binary.BigEndian.PutUint64(k, uint64(rev))
				k[8] = '_'
				if err := b.Put(k, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "generated %s: %d revisions, %d keys in %s\n", filepath.Base(path), rev, len(keys), time.Since(start).Round(time.Second))
	return db.Sync()
}

func appendTrailer(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if _, err := f.Write(h.Sum(nil)); err != nil {
		return err
	}
	return f.Sync()
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

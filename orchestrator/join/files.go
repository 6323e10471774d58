package join

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

// abs is a path of the master's root.
// abs is the host path of a path on the master, symlinks followed inside
// the root (an unresolvable one, a loop, is joined as written and fails
// where it is used).
func (jn *joiner) abs(rel string) string {
	p, err := jn.rootfs.Resolve(rel)
	if err != nil {
		return filepath.Join(jn.root, rel)
	}
	return p
}

// certRel is where the profile keeps the member's certificate and key of a kind.
func (jn *joiner) certRel(kind string) (cert, key string) {
	return jn.prof.MemberCert(kind, signer.CertIdentity(jn.m))
}

// ours reports whether a file is the one this join wrote (its hash is noted).
func (jn *joiner) ours(rel string) bool {
	want := jn.j.Notes["file:"+rel]
	if want == "" {
		return false
	}
	b, err := os.ReadFile(jn.abs(rel))
	return err == nil && hashOf(b) == want
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeOurs writes a file atomically and notes it as this join's.
func (jn *joiner) writeOurs(rel string, data []byte, mode fs.FileMode) error {
	p := jn.abs(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return jn.j.Note("file:"+rel, hashOf(data))
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

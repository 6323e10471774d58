package boltcheck

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheck damages small valid files (the seed corpus in
// testdata/fuzz/FuzzCheck) and asserts Check agrees with bbolt's Tx.Check:
// whatever bbolt rejects Check rejects, and whatever Check rejects that
// bbolt accepts breaks a rule bbolt does not enforce (Format or Etcd).
// Check must never panic.
func FuzzCheck(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "fuzz.db")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		agree(t, p)
	})
}

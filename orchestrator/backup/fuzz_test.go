package backup

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheckTarball: any file is listed or refused, never a panic, and an
// accepted tarball is within its bounds and holds nothing that leaves the
// folder it is extracted into.
func FuzzCheckTarball(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "static_kuberesources_x.tar.gz")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, single := range []bool{false, true} {
			info, err := CheckTarball(context.Background(), p, TarCheck{Single: single, Budget: 64 << 20, MaxEntries: 1000})
			if err != nil {
				continue
			}
			if info.Entries > 1000 || info.Bytes > 64<<20 {
				t.Fatalf("accepted %d entries, %d bytes", info.Entries, info.Bytes)
			}
			for _, top := range info.TopDirs {
				if top == ".." || filepath.IsAbs(top) {
					t.Fatalf("accepted a tarball with top level %q", top)
				}
			}
			if single && info.Snapshot == "" {
				t.Fatal("accepted a single-file backup without a snapshot")
			}
		}
	})
}

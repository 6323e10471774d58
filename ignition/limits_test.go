package ignition

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/vincent-petithory/dataurl"
)

// gzipBomb is a small gzip stream that expands to size bytes of zeros: one
// compressed 16 MiB member repeated (gzip readers read concatenated members
// as one stream), so building it is quick.
func gzipBomb(t *testing.T, size int64) []byte {
	t.Helper()
	const member = 16 << 20
	var one bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&one, gzip.BestCompression)
	zw.Write(make([]byte, member))
	zw.Close()
	return bytes.Repeat(one.Bytes(), int(size/member))
}

// withFiles adds files to a built config.
func withFiles(t *testing.T, raw []byte, files map[string][]byte, compression string) []byte {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	storage := cfg["storage"].(map[string]any)
	list := storage["files"].([]any)
	for path, data := range files {
		contents := map[string]any{"source": dataurl.EncodeBytes(data)}
		if compression != "" {
			contents["compression"] = compression
		}
		list = append(list, map[string]any{"path": path, "contents": contents})
	}
	storage["files"] = list
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReadRefusesAGzipBomb(t *testing.T) {
	good, err := Build(Options{Plan: []byte(testPlan), Role: Role{Role: RoleVerify}})
	if err != nil {
		t.Fatal(err)
	}
	bomb := gzipBomb(t, 1<<30)
	t.Logf("a %d KiB gzip that expands to 1 GiB", len(bomb)>>10)
	raw := withFiles(t, good, map[string][]byte{Dir + "/bomb": bomb}, "gzip")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = Read(raw)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), Dir+"/bomb") || !strings.Contains(err.Error(), "beyond the 64 MiB limit per file") {
		t.Fatalf("err = %v, want the file and the limit named", err)
	}
	// Streaming: the read stopped at the limit instead of expanding it all.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 400<<20 {
		t.Errorf("reading the bomb allocated %d MiB", alloc>>20)
	}

	// A file just under the limit is read.
	under := withFiles(t, good, map[string][]byte{Dir + "/big": gzipBomb(t, 48<<20)}, "gzip")
	cfg, err := Read(under)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Files[Dir+"/big"].Data); n != 48<<20 {
		t.Fatalf("file under the limit: %d bytes", n)
	}
}

func TestReadRefusesTooMuchInTotal(t *testing.T) {
	good, err := Build(Options{Plan: []byte(testPlan), Role: Role{Role: RoleVerify}})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for i := 0; i < 3; i++ {
		files[fmt.Sprintf("%s/part%d", Dir, i)] = gzipBomb(t, 48<<20)
	}
	_, err = Read(withFiles(t, good, files, "gzip"))
	if err == nil || !strings.Contains(err.Error(), "more than 128 MiB together") {
		t.Fatalf("err = %v, want the total limit", err)
	}
	// Files outside Dir are not decoded at all.
	outside := withFiles(t, good, map[string][]byte{"/var/bomb": gzipBomb(t, 1<<30)}, "gzip")
	if _, err := Read(outside); err != nil {
		t.Fatalf("a file outside %s: %v", Dir, err)
	}
	// An uncompressed data: URL over the limit is refused before decoding more.
	// (inline directly: Ignition's parser takes long over a 90 MB config.)
	src := dataurl.EncodeBytes(make([]byte, MaxFileSize+1))
	if _, err := inline(&src, nil); err == nil || !strings.Contains(err.Error(), "limit per file") {
		t.Fatalf("uncompressed file over the limit: %v", err)
	}
	// A raw config over MaxConfigSize is refused whole.
	if _, err := Read(make([]byte, MaxConfigSize+1)); err == nil || !strings.Contains(err.Error(), "more than the 256 MiB") {
		t.Fatalf("config over the limit: %v", err)
	}
}

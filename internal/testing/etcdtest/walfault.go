package etcdtest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"google.golang.org/protobuf/proto"
)

// lastSegment returns the newest WAL segment of a data dir, its bytes, and
// the offsets of its records' frames: an 8-byte length (padding in the top
// byte), then the record; a zero length ends the written part.
func lastSegment(t testing.TB, dataDir string) (path string, b []byte, frames []int64) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dataDir, "member", "wal", "*.wal"))
	sort.Strings(segs)
	if len(segs) == 0 {
		t.Fatal("no WAL segment")
	}
	path = segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off+8 <= int64(len(b)); {
		l := binary.LittleEndian.Uint64(b[off:])
		if l == 0 {
			break
		}
		frames = append(frames, off)
		off += 8 + recordSize(l)
		if l>>63 == 1 {
			off += int64(l>>56) & 0x7
		}
	}
	if len(frames) < 4 {
		t.Fatalf("%s holds %d records: too few to damage", path, len(frames))
	}
	return path, b, frames
}

func recordSize(frame uint64) int64 { return int64(frame & (1<<56 - 1)) }

// DamageWAL flips a byte inside the data of a record in the middle of the
// newest WAL segment: a bit rot etcd refuses to start from (unlike a torn
// tail, which it cuts off).
func DamageWAL(t testing.TB, dataDir string) {
	t.Helper()
	path, b, frames := lastSegment(t, dataDir)
	mid := frames[len(frames)/2]
	b[mid+8+recordSize(binary.LittleEndian.Uint64(b[mid:]))/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TearWAL cuts the newest WAL segment in the middle of its last entry
// record, as a crash while writing it leaves it.
func TearWAL(t testing.TB, dataDir string) {
	t.Helper()
	path, b, frames := lastSegment(t, dataDir)
	for i := len(frames) - 1; i >= 0; i-- {
		off := frames[i]
		size := recordSize(binary.LittleEndian.Uint64(b[off:]))
		var rec walpb.Record
		if err := proto.Unmarshal(b[off+8:off+8+size], &rec); err != nil {
			t.Fatal(err)
		}
		if rec.GetType() == wal.EntryType {
			if err := os.Truncate(path, off+8+size/2); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%s holds no entry", path)
}

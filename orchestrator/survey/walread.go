package survey

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// etcd's WAL reader (wal.OpenForRead) opens the segments itself and takes
// no reader of ours, so how far it got is read from the kernel: the read
// offset of each file descriptor it holds on a segment, in
// /proc/self/fdinfo. That is what it has read from the files (its buffer
// reads slightly ahead of what it decoded), not an estimate.

// walFD is a file descriptor on a WAL segment.
type walFD struct {
	fd, path, name string
	size           int64
}

// walFDs lists the file descriptors this process holds on segments
// (*.wal) in dir: taken right after the reader is opened, minus those held
// before (another reader of the same WAL), they are the reader's own.
// Without /proc it returns none.
func walFDs(dir string) map[string]walFD {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil
	}
	if real, err = filepath.Abs(real); err != nil {
		return nil
	}
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	fds := map[string]walFD{}
	for _, de := range des {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name()))
		if err != nil || filepath.Dir(target) != real || !strings.HasSuffix(target, ".wal") {
			continue
		}
		st, err := os.Stat(filepath.Join("/proc/self/fd", de.Name()))
		if err != nil {
			continue
		}
		fds[de.Name()] = walFD{fd: de.Name(), path: target, name: filepath.Base(target), size: st.Size()}
	}
	return fds
}

// newFDs is what after holds that before did not, and their sizes summed.
func newFDs(before, after map[string]walFD) (fds []walFD, total int64) {
	for name, fd := range after {
		if _, ok := before[name]; !ok {
			fds = append(fds, fd)
			total += fd.size
		}
	}
	return fds, total
}

// readOffset sums the read offsets ("pos:" in /proc/self/fdinfo) of fds.
// A descriptor closed, or reused for another file, counts 0: the reader
// closes its files when it is done, so callers keep the highest sum seen.
func readOffset(fds []walFD) int64 {
	var n int64
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.fd)); err != nil || target != fd.path {
			continue
		}
		f, err := os.Open(filepath.Join("/proc/self/fdinfo", fd.fd))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "pos:"); ok {
				p, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += p
				break
			}
		}
		f.Close()
	}
	return n
}

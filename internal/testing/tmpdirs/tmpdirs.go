// Package tmpdirs makes temporary folders that outlive the test that made
// them (a scene staged once and shared by a package's tests, the etcd
// binary built once per test binary) without filling the disk run after
// run.
//
// Such a folder cannot be removed by the test that made it, and removing it
// at the end of the test process would need a TestMain in every package.
// Instead each folder is named for the process that made it,
// <prefix>pid<PID>-<random>, and the first time a process makes one with a
// given prefix it removes the folders with that prefix whose process is no
// longer running: a run cleans what the runs before it left, and never
// what a test binary running next to it still uses. Folders named
// otherwise (an older naming without the PID) are left alone.
package tmpdirs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	mu    sync.Mutex
	swept = map[string]bool{} // prefixes swept by this process
)

// Make creates a folder in os.TempDir() named for this process,
// prefix + "pid<PID>-" + a random part, after removing, the first time in
// this process, the folders with that prefix left by processes that ended.
func Make(prefix string) (string, error) {
	mu.Lock()
	if !swept[prefix] {
		swept[prefix] = true
		Sweep(os.TempDir(), prefix)
	}
	mu.Unlock()
	return os.MkdirTemp("", prefix+"pid"+strconv.Itoa(os.Getpid())+"-")
}

// Sweep removes the folders in parent named prefix + "pid<PID>-…" whose
// process no longer runs. A folder it cannot remove is left for a later
// sweep: a leftover must never fail a test.
func Sweep(parent, prefix string) {
	des, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, de := range des {
		pid, ok := pidOf(de.Name(), prefix)
		if !de.IsDir() || !ok || running(pid) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(parent, de.Name()))
	}
}

// pidOf reads the PID in a name made by Make.
func pidOf(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"pid")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// running says whether process pid exists. Signal 0 checks without
// sending anything; only ESRCH means it is gone (EPERM is another user's
// live process). A PID reused since keeps its folder until a later sweep.
func running(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

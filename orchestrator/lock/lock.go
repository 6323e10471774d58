// Package lock keeps two etcd-rescue runs off the same master root: each run
// holds an exclusive lock on the root for as long as it works on it.
//
// The lock is flock(LOCK_EX|LOCK_NB) on a file descriptor of the root folder
// itself, so taking it writes nothing: a run that is refused leaves the root
// byte-for-byte as it found it, and a lock can never be left behind by a
// crash (the kernel drops it with the last descriptor). flock belongs to the
// open file description, so a second Acquire in the same process conflicts
// too. When the root is held, /proc/locks names the holder's PID (matched by
// the root's device and inode) and /proc/PID/stat its start time.
package lock

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held root lock.
type Lock struct {
	f    *os.File
	root string
}

// HeldError says another run holds the root. PID is 0 when the holder could
// not be found in /proc/locks (another PID namespace); Started is zero when
// its start time could not be read.
type HeldError struct {
	Root    string
	PID     int
	Started time.Time
}

func (e *HeldError) Error() string {
	who := "another etcd-rescue run"
	switch {
	case e.PID != 0 && !e.Started.IsZero():
		who += fmt.Sprintf(" (pid %d, started at %s)", e.PID, e.Started.UTC().Format(time.RFC3339))
	case e.PID != 0:
		who += fmt.Sprintf(" (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s holds %s: wait for it or stop it", who, e.Root)
}

// Acquire takes the root's lock without waiting. It fails with a *HeldError
// when another run (or another Acquire in this process) holds it.
func Acquire(root string) (*Lock, error) {
	f, err := os.OpenFile(root, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock root %s: %w (give the folder the master's root is mounted on)", root, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err == nil {
		return &Lock{f: f, root: root}, nil
	}
	defer f.Close()
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return nil, fmt.Errorf("lock root %s: %w", root, err)
	}
	held := &HeldError{Root: root}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err == nil {
		held.PID = holder(uint64(st.Dev), st.Ino)
	}
	if held.PID != 0 {
		held.Started, _ = startTime(held.PID)
	}
	return nil, held
}

// Root is the locked root as given to Acquire.
func (l *Lock) Root() string { return l.root }

// Release drops the lock. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	return err
}

// holder finds the PID of the FLOCK on dev:ino in /proc/locks, 0 if none.
// A line reads "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1311 0 EOF"; a blocked
// waiter has "->" after the number and is skipped.
func holder(dev, ino uint64) int {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		if fields[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// startTime is when pid started: boot time (/proc/stat btime) plus its
// start time in ticks since boot (field 22 of /proc/PID/stat).
func startTime(pid int) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return time.Time{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted after its closing parenthesis, which is field 3's start.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	rest := strings.Fields(s[i+1:])
	const startField = 22 - 3 // index of field 22 in rest, which starts at field 3
	if len(rest) <= startField {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ticks, err := strconv.ParseUint(rest[startField], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/%d/stat start time: %w", pid, err)
	}
	boot, err := bootTime()
	if err != nil {
		return time.Time{}, err
	}
	return boot.Add(time.Duration(ticks) * time.Second / clockTicks), nil
}

func bootTime() (time.Time, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("/proc/stat btime: %w", err)
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, errors.New("/proc/stat has no btime")
}

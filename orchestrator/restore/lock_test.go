package restore_test

import (
	"os"
	"syscall"
)

// lockExclusive takes the lock a running etcd holds on its backend.
func lockExclusive(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }

// Package testport hands out free TCP ports on 127.0.0.1 for servers that
// tests start in other processes (etcd, kube-apiserver), which need a port
// before they listen.
//
// Asking the kernel for port 0 and closing the listener races with the
// other test binaries `go test ./...` runs at the same time: the kernel
// hands the same recently freed ports to them. Each process instead walks
// a block of ports below the kernel's ephemeral range (where no client
// socket lands either) that it holds alone: it takes an exclusive flock on
// the block's file in a shared folder and keeps it until it exits (the
// kernel drops the lock then, after a crash too). Blocks picked by PID
// alone were shared by two processes whose PIDs were equal modulo the
// number of blocks, and a server of one then took a port the other had
// just found free.
package testport

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

const (
	first     = 10000 // below net.ipv4.ip_local_port_range (32768 and up)
	blockSize = 500
	blocks    = 40 // 10000–29999
)

// lockDir holds one lock file per block, shared by every test process.
var lockDir = filepath.Join(os.TempDir(), "etcd-rescue-testport")

var (
	mu    sync.Mutex
	block = -1 // the block this process holds; -1: none yet
	next  int  // the next port of it to try
	held  []*os.File
)

// Free returns a port on 127.0.0.1 that nothing listens on now and that no
// other call in this process, nor any other process holding a block, has
// returned.
func Free(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for tries := 0; tries < blocks*blockSize; tries++ {
		if block < 0 || next >= first+(block+1)*blockSize {
			if !claimBlock() {
				break
			}
		}
		p := next
		next++
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port on 127.0.0.1 between 10000 and 29999 in a block no other test process holds")
	return 0
}

// claimBlock takes the next block no other process holds, searching from
// the one after the block held (the first time, from one picked by PID,
// so that processes seldom try the same files).
func claimBlock() bool {
	from := os.Getpid() % blocks
	if block >= 0 {
		from = block + 1
	}
	if err := os.MkdirAll(lockDir, 0o777); err != nil {
		return false
	}
	for i := 0; i < blocks; i++ {
		b := (from + i) % blocks
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("block-%d", b)), os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		held = append(held, f) // open for as long as the process runs: the lock with it
		block, next = b, first+b*blockSize
		return true
	}
	return false
}

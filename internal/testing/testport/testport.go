// Package testport hands out free TCP ports on 127.0.0.1 for servers that
// tests start in other processes (etcd, kube-apiserver), which need a port
// before they listen.
//
// Asking the kernel for port 0 and closing the listener races with the
// other test binaries `go test ./...` runs at the same time: the kernel
// hands the same recently freed ports to them. Each process instead walks
// its own block of ports below the kernel's ephemeral range (where no
// client socket lands either), chosen from its PID.
package testport

import (
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
)

const (
	first     = 10000 // below net.ipv4.ip_local_port_range (32768 and up)
	blockSize = 500
	blocks    = 40 // 10000–29999
)

var (
	mu   sync.Mutex
	next = first + (os.Getpid()%blocks)*blockSize
	end  = next + blockSize
)

// Free returns a port on 127.0.0.1 that nothing listens on now and that no
// other call in this process has returned.
func Free(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for tries := 0; tries < blocks*blockSize; tries++ {
		p := next
		next++
		if next >= end { // this block is used up: move to the next one
			next = first + ((next-first)/blockSize%blocks)*blockSize
			if next == first+blocks*blockSize {
				next = first
			}
			end = next + blockSize
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port on 127.0.0.1 between 10000 and 29999")
	return 0
}

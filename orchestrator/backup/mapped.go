package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapWindow is how much of the file mappedChunks maps at a time. Two
// windows are mapped at once (the one hashed, the one read ahead), so they
// are what the file adds to the process's resident set.
const mapWindow = 16 << 20

// errNoMapping says the file cannot be read through a mapping here (a file
// system without mmap, or a kernel before 5.14 without MADV_POPULATE_READ),
// found at the first window, before anything was handed over: the caller
// reads the file instead.
var errNoMapping = errors.New("file cannot be read through a mapping")

// mappedChunks hands bytes [0, n) of f to each in windows mapped from the
// page cache, in order, so they are never copied into a buffer: a
// goroutine maps the next window and reads it in (MADV_POPULATE_READ,
// after FADV_WILLNEED on the ones after it) while each works on the
// current one. Measured hashing 4 GiB with the page cache dropped on 2
// cores against reading into buffers (readChunks): 3.6–4.6 s against
// 5.1–7.2 s, with 30–45% less CPU time (the kernel's copy into the buffers).
//
// A read error or a file cut short surfaces as an error from the
// populate, not as SIGBUS; a fault all the same (the window's pages
// reclaimed and the file cut in between) becomes an error too. A window
// passed to each is unmapped once each returns: each must not keep it.
func mappedChunks(ctx context.Context, f *os.File, n int64, each func([]byte) error) error {
	type window struct {
		b   []byte
		off int64
		err error
	}
	full := make(chan window, 1)
	stop := make(chan struct{})
	defer func() {
		close(stop)
		for w := range full {
			unix.Munmap(w.b)
		}
	}()
	go func() {
		defer close(full)
		for at := int64(0); at < n; at += mapWindow {
			b, err := mapAndPopulate(f, at, min(mapWindow, n-at))
			if err != nil && at != 0 {
				// Windows were handed over: reading instead would start again.
				err = fmt.Errorf("read at offset %d: %v", at, err)
			}
			select {
			case full <- window{b: b, off: at, err: err}:
			case <-stop:
				unix.Munmap(b)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for w := range full {
		if w.err != nil {
			return w.err
		}
		err := ctx.Err()
		if err != nil {
			err = fmt.Errorf("stopped: %w", err)
		} else {
			err = faultAsError(w.b, w.off, func() error { return each(w.b) })
		}
		unix.Munmap(w.b)
		if err != nil {
			return err
		}
	}
	return nil
}

// mapAndPopulate maps n bytes of f at off (a multiple of the page size)
// and reads them in. A file that cannot be mapped, or a kernel without
// MADV_POPULATE_READ, returns errNoMapping; a read error or bytes past the
// end of the file return an error saying so.
func mapAndPopulate(f *os.File, off, n int64) ([]byte, error) {
	fd := int(f.Fd())
	b, err := unix.Mmap(fd, off, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap: %w", errNoMapping, err)
	}
	unix.Madvise(b, unix.MADV_SEQUENTIAL)
	unix.Fadvise(fd, off+n, 2*mapWindow, unix.FADV_WILLNEED)
	if err := unix.Madvise(b, unix.MADV_POPULATE_READ); err != nil {
		unix.Munmap(b)
		switch {
		case errors.Is(err, unix.EFAULT):
			return nil, fmt.Errorf("read at offset %d: the disk returned an error or the file was cut short while it was read (%w)", off, err)
		case errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("%w: madvise(MADV_POPULATE_READ): %w", errNoMapping, err)
		}
		return nil, fmt.Errorf("read at offset %d: %w", off, err)
	}
	return b, nil
}

// faultAsError runs fn with faults on mapped memory turned into panics
// (debug.SetPanicOnFault, for this goroutine only), and a fault inside the
// window b (mapped at off) into an error; any other panic goes on.
func faultAsError(b []byte, off int64, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		fault, ok := r.(interface{ Addr() uintptr })
		start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if !ok || fault.Addr() < start || fault.Addr() >= start+uintptr(len(b)) {
			panic(r)
		}
		err = fmt.Errorf("read at offset %d failed: the file was cut short or the disk returned an error (%v)", off+int64(fault.Addr()-start), r)
	}()
	return fn()
}

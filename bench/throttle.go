package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
)

// throttled is the restore from a slow source, as a USB stick or a network
// volume is: the backup on an ext4 file system on a loop device whose reads
// the block I/O cgroup limits to a rate (cgroup v2 io.max, or v1
// blkio.throttle.read_bps_device). The baseline is one plain read of the
// backup from the same device; the restore should take little more.
type throttled struct {
	size, rate                int64
	readOnce, rescue, etcdutl []sample
	how                       string // which cgroup interface limited the reads
}

// measureThrottled runs, runs times each and alternating, one read of
// snap, etcd-rescue's restore and etcdutl's restore, all reading snap from
// a loop device limited to rate bytes per second.
func measureThrottled(c config, ca *pki.CA, snap string, rate int64) (t *throttled, err error) {
	t = &throttled{size: fileSize(snap), rate: rate}
	dev, mnt, undo, err := loopCopy(c.work, snap)
	if err != nil {
		return nil, err
	}
	defer func() {
		if uerr := undo(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	src := filepath.Join(mnt, filepath.Base(snap))
	leave, how, err := enterThrottle(dev, rate)
	if err != nil {
		return nil, err
	}
	t.how = how
	defer func() {
		if lerr := leave(); lerr != nil && err == nil {
			err = lerr
		}
	}()
	for i := 0; i < c.runs; i++ {
		dropCaches()
		start := time.Now()
		if err := readAll(src); err != nil {
			return nil, err
		}
		t.readOnce = append(t.readOnce, sample{wall: time.Since(start)})
		var r result
		if err := measureRestore(c, ca, src, &r); err != nil {
			return nil, err
		}
		t.rescue = append(t.rescue, r.restoreRescue...)
		t.etcdutl = append(t.etcdutl, r.restoreUtl...)
	}
	return t, nil
}

func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
	return err
}

// loopCopy puts a copy of snap on a new ext4 file system in an image file
// under work, attached to a loop device and mounted read-only; undo
// unmounts, detaches and removes it.
func loopCopy(work, snap string) (dev, mnt string, undo func() error, err error) {
	img := filepath.Join(work, "throttled.img")
	mnt = filepath.Join(work, "throttled")
	var steps []func() error
	cleanup := func() error {
		var errs []error
		for i := len(steps) - 1; i >= 0; i-- {
			errs = append(errs, steps[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	run := func(name string, args ...string) (string, error) {
		var stderr strings.Builder
		cmd := exec.Command(name, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out)), nil
	}
	size := fileSize(snap)
	if err := os.Truncate(img, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", nil, err
	}
	f, err := os.Create(img)
	if err != nil {
		return "", "", nil, err
	}
	steps = append(steps, func() error { return os.Remove(img) })
	err = f.Truncate((size + size/10 + 64<<20) &^ (1<<20 - 1))
	f.Close()
	if err != nil {
		return "", "", nil, err
	}
	if _, err := run("mkfs.ext4", "-q", "-F", img); err != nil {
		return "", "", nil, err
	}
	if dev, err = run("losetup", "--find", "--show", img); err != nil {
		return "", "", nil, err
	}
	steps = append(steps, func() error { _, err := run("losetup", "-d", dev); return err })
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", "", nil, err
	}
	if _, err := run("mount", dev, mnt); err != nil {
		return "", "", nil, err
	}
	steps = append(steps, func() error { _, err := run("umount", mnt); return err })
	if _, err := run("cp", snap, mnt+"/"); err != nil {
		return "", "", nil, err
	}
	if _, err := run("mount", "-o", "remount,ro", mnt); err != nil {
		return "", "", nil, err
	}
	return dev, mnt, cleanup, nil
}

// enterThrottle moves this process (and so the commands it starts) into a
// new block I/O cgroup that limits reads from dev to rate bytes per
// second; leave moves it back and removes the cgroup.
func enterThrottle(dev string, rate int64) (leave func() error, how string, err error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return nil, "", err
	}
	devNo := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	pid := strconv.Itoa(os.Getpid())
	var parent, limitFile, limit string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		parent, limitFile, limit = "/sys/fs/cgroup", "io.max", fmt.Sprintf("%s rbps=%d", devNo, rate)
		how = "cgroup v2 io.max rbps"
		// The root's children get the io controller.
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+io"), 0o644); err != nil {
			return nil, "", fmt.Errorf("enable the io controller: %w", err)
		}
	} else {
		parent, limitFile, limit = "/sys/fs/cgroup/blkio", "blkio.throttle.read_bps_device", fmt.Sprintf("%s %d", devNo, rate)
		how = "cgroup v1 blkio.throttle.read_bps_device"
	}
	dir := filepath.Join(parent, "etcd-rescue-bench-"+pid)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("make a cgroup to limit reads: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(limit), 0o644); err != nil {
		os.Remove(dir)
		return nil, "", fmt.Errorf("limit reads from %s: %w", dev, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(pid), 0o644); err != nil {
		os.Remove(dir)
		return nil, "", fmt.Errorf("enter the cgroup: %w", err)
	}
	return func() error {
		if err := os.WriteFile(filepath.Join(parent, "cgroup.procs"), []byte(pid), 0o644); err != nil {
			return fmt.Errorf("leave the cgroup: %w", err)
		}
		// The children have exited; the kernel may take a moment to see the cgroup empty.
		for i := 0; ; i++ {
			err := syscall.Rmdir(dir)
			if err == nil || i == 50 {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}, how, nil
}

// markdown is the throttled row's section.
func (t *throttled) markdown() string {
	_, read, _ := stats(t.readOnce)
	_, resc, _ := stats(t.rescue)
	_, utl, _ := stats(t.etcdutl)
	return fmt.Sprintf("\n### Restore from a throttled source\n\n"+
		"The %s snapshot on ext4 on a loop device whose reads are limited to %.0f MB/s (%s), as a USB stick or a network volume would serve it; the page cache dropped before each run; medians of %d runs. "+
		"The baseline reads the backup once from that device.\n\n"+
		"| read the backup once | etcd-rescue restore | ratio to one read | etcdutl snapshot restore | etcd-rescue / etcdutl |\n|---|---|---|---|---|\n"+
		"| %s | %s | %.2f | %s | %.2f |\n",
		mib(t.size), float64(t.rate)/1e6, t.how, len(t.readOnce), d(read), d(resc), float64(resc)/float64(read), d(utl), float64(resc)/float64(utl))
}

// ratio is the restore's median time over one read's.
func (t *throttled) ratio() float64 {
	_, read, _ := stats(t.readOnce)
	_, resc, _ := stats(t.rescue)
	return float64(resc) / float64(read)
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/internal/fixture"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/backup"
)

// sample is one timed run of a command.
type sample struct {
	wall   time.Duration
	maxRSS int64 // bytes
	// steps are the step durations etcd-rescue printed ("step 3/6 x: done (1.2s)").
	steps map[string]time.Duration
}

// result is one snapshot size's measurements.
type result struct {
	size, revision                       int64
	keys                                 int
	restoreUtl, restoreRescue, copyFloor []sample
	statusUtl, verifyRescue              []sample
	cacheDropped                         bool
}

const member = "bench"
const peer = "https://127.0.0.1:2380"

func measure(c config, snap string) (*result, error) {
	r := &result{size: fileSize(snap)}
	st, err := backup.VerifySnapshot(snap, false)
	if err != nil {
		return nil, err
	}
	r.revision, r.keys = st.Status.Revision, st.Status.TotalKey
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return nil, err
	}
	ca, err := pki.NewCA("bench", time.Hour)
	if err != nil {
		return nil, err
	}
	for i := 0; i < c.runs; i++ {
		// etcdutl, as a user would run it
		dir := filepath.Join(c.work, "etcdutl")
		os.RemoveAll(dir)
		r.cacheDropped = dropCaches()
		s, err := timed(c.etcdutl, "snapshot", "restore", snap, "--name", member, "--initial-cluster", member+"="+peer,
			"--initial-advertise-peer-urls", peer, "--data-dir", dir, "--bump-revision", "1000000", "--mark-compacted")
		if err != nil {
			return nil, err
		}
		r.restoreUtl = append(r.restoreUtl, s)
		os.RemoveAll(dir)

		// etcd-rescue, offline on a kubeadm master root, the same restore
		root := filepath.Join(c.work, "root")
		os.RemoveAll(root)
		if _, err := fixture.Write(root, fixture.Master{Profile: "kubeadm", NodeName: member, MemberName: member, IP: "127.0.0.1"}, ca); err != nil {
			return nil, err
		}
		dropCaches()
		s, err = timed(c.rescue, "restore", "--root", root, "--backup", snap, "--snapshot-only", "--profile", "kubeadm",
			"--name", member, "--initial-cluster", member+"="+peer, "--revision-bump", "1000000")
		if err != nil {
			return nil, err
		}
		r.restoreRescue = append(r.restoreRescue, s)
		os.RemoveAll(root)

		// the floor: copy the file and fsync it
		dropCaches()
		start := time.Now()
		if err := atomicfile.CopyFile(snap, filepath.Join(c.work, "copy.db"), 0o644); err != nil {
			return nil, err
		}
		r.copyFloor = append(r.copyFloor, sample{wall: time.Since(start)})
		os.Remove(filepath.Join(c.work, "copy.db"))

		dropCaches()
		s, err = timed(c.etcdutl, "snapshot", "status", snap)
		if err != nil {
			return nil, err
		}
		r.statusUtl = append(r.statusUtl, s)
		dropCaches()
		s, err = timed(c.rescue, "verify-backup", "--snapshot-only", snap)
		if err != nil {
			return nil, err
		}
		r.verifyRescue = append(r.verifyRescue, s)
	}
	return r, nil
}

// timed runs a command and returns its wall time and peak RSS. The peak
// is the child's own VmHWM, polled from /proc: wait4's ru_maxrss would
// report this (large) parent's size, which the kernel carries into a
// child across fork and exec.
func timed(bin string, args ...string) (sample, error) {
	cmd := exec.Command(bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	peak := make(chan int64)
	stop := make(chan struct{})
	go func() {
		var max int64
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		for {
			if v := vmHWM(status); v > max {
				max = v
			}
			select {
			case <-stop:
				peak <- max
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(start)
	close(stop)
	rss := <-peak
	if err != nil {
		return sample{}, fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	return sample{wall: wall, maxRSS: rss, steps: stepTimes(out.String())}, nil
}

// stepTimes reads the step runner's "step N/M name: done (d)" lines.
func stepTimes(out string) map[string]time.Duration {
	times := map[string]time.Duration{}
	for _, l := range strings.Split(out, "\n") {
		var n, m int
		var name, d string
		if _, err := fmt.Sscanf(l, "step %d/%d %s done (%s", &n, &m, &name, &d); err != nil {
			continue
		}
		if v, err := time.ParseDuration(strings.TrimSuffix(d, ")")); err == nil {
			times[strings.TrimSuffix(name, ":")] = v
		}
	}
	return times
}

// vmHWM reads a process's peak resident set size in bytes, or 0.
func vmHWM(statusFile string) int64 {
	b, err := os.ReadFile(statusFile)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

// dropCaches empties the page cache so every run reads from disk; it
// reports whether that was possible (root only).
func dropCaches() bool {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200) == nil
}

func stats(s []sample) (min, median time.Duration, rss int64) {
	w := make([]time.Duration, len(s))
	for i, x := range s {
		w[i] = x.wall
		if x.maxRSS > rss {
			rss = x.maxRSS
		}
	}
	sort.Slice(w, func(i, j int) bool { return w[i] < w[j] })
	return w[0], w[len(w)/2], rss
}

func (r *result) line() string {
	_, u, _ := stats(r.restoreUtl)
	_, e, _ := stats(r.restoreRescue)
	return fmt.Sprintf("%s: etcdutl restore %s, etcd-rescue restore %s (ratio %.2f)", mib(r.size), u.Round(time.Millisecond), e.Round(time.Millisecond), float64(e)/float64(u))
}

func mib(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

type report struct {
	machine string
	rows    []*result
	skipped []string
	image   *imageResult
}

func (rep *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nRun with `make bench` on %s, %s.\n\n", rep.machine, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString("## Offline restore: etcd-rescue against `etcdutl snapshot restore`\n\n")
	b.WriteString("Same snapshot, same member, initial cluster, revision bump (1,000,000) and compaction mark; runs alternate. ")
	b.WriteString("etcd-rescue's time includes what etcdutl does not do: finding and verifying the backup (sha256 trailer, bbolt check, key count) before touching the master, keeping the old state aside, and rewriting the manifest. The floor is a copy of the file with fsync.\n\n")
	b.WriteString("| snapshot | revisions | keys | etcdutl min / median | etcd-rescue min / median | ratio (median) | MB/s (etcd-rescue) | peak RSS etcdutl / etcd-rescue | copy+fsync floor |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.rows {
		umin, umed, urss := stats(r.restoreUtl)
		emin, emed, erss := stats(r.restoreRescue)
		_, fmed, _ := stats(r.copyFloor)
		fmt.Fprintf(&b, "| %s | %d | %d | %s / %s | %s / %s | %.2f | %.0f | %d / %d MiB | %s |\n",
			mib(r.size), r.revision, r.keys, d(umin), d(umed), d(emin), d(emed), float64(emed)/float64(umed),
			float64(r.size)/(1<<20)/emed.Seconds(), urss>>20, erss>>20, d(fmed))
	}
	b.WriteString("\n### Where etcd-rescue's restore time goes\n\nMedian of each step as the restore prints it.\n\n| snapshot | verify-backup | preflight | keep-old-state | restore-snapshot | rewrite-manifest |\n|---|---|---|---|---|---|\n")
	for _, r := range rep.rows {
		fmt.Fprintf(&b, "| %s |", mib(r.size))
		for _, st := range []string{"verify-backup", "preflight", "keep-old-state", "restore-snapshot", "rewrite-manifest"} {
			var ds []sample
			for _, x := range r.restoreRescue {
				ds = append(ds, sample{wall: x.steps[st]})
			}
			_, med, _ := stats(ds)
			fmt.Fprintf(&b, " %s |", d(med))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## Backup verification: `etcd-rescue verify-backup` against `etcdutl snapshot status`\n\n")
	b.WriteString("etcdutl's status runs bbolt's check and counts keys; etcd-rescue also checks the sha256 trailer.\n\n")
	b.WriteString("| snapshot | etcdutl status median | etcd-rescue verify-backup median | ratio | peak RSS etcdutl / etcd-rescue |\n|---|---|---|---|---|\n")
	for _, r := range rep.rows {
		_, umed, urss := stats(r.statusUtl)
		_, emed, erss := stats(r.verifyRescue)
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %d / %d MiB |\n", mib(r.size), d(umed), d(emed), float64(emed)/float64(umed), urss>>20, erss>>20)
	}
	if len(rep.rows) > 0 {
		fmt.Fprintf(&b, "\nPage cache dropped before every run: %v.\n", rep.rows[0].cacheDropped)
	}
	for _, s := range rep.skipped {
		fmt.Fprintf(&b, "\nSkipped %s.\n", s)
	}
	if rep.image != nil {
		b.WriteString(rep.image.markdown())
	}
	b.WriteString(rep.targets())
	return b.String()
}

func d(x time.Duration) string {
	if x >= 10*time.Second {
		return x.Round(100 * time.Millisecond).String()
	}
	return x.Round(time.Millisecond).String()
}

// machine describes the host: cores, CPU model, disk.
func machine(dir string) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	disk := "unknown disk"
	if out, err := exec.Command("df", "-h", "--output=source,size", filepath.Dir(dir)).Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		disk = strings.Join(strings.Fields(lines[len(lines)-1]), " ")
	}
	return fmt.Sprintf("%d cores (%s), disk %s", runtime.NumCPU(), model, disk)
}

// targets lists the targets with what this run measured.
func (rep *report) targets() string {
	var b strings.Builder
	b.WriteString("\n## Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, r := range rep.rows {
		_, umed, urss := stats(r.restoreUtl)
		_, emed, erss := stats(r.restoreRescue)
		ratio := float64(emed) / float64(umed)
		fmt.Fprintf(&b, "| restore ratio ≤ 1.05 at %s | %.2f | %v |\n", mib(r.size), ratio, ratio <= 1.05)
		if r.size >= 8<<30 {
			fmt.Fprintf(&b, "| peak RSS ≤ 256 MiB at %s | %d MiB (etcdutl %d MiB) | %v |\n", mib(r.size), erss>>20, urss>>20, erss <= 256<<20)
		}
	}
	if ir := rep.image; ir != nil {
		fmt.Fprintf(&b, "| initramfs ≤ 30 MB compressed | %.1f MiB | %v |\n", float64(ir.compressed)/(1<<20), ir.compressed <= 30e6)
		if len(ir.boots) > 0 {
			var s []sample
			for _, x := range ir.boots {
				s = append(s, sample{wall: x})
			}
			_, med, _ := stats(s)
			fmt.Fprintf(&b, "| boot ≤ 5 s under TCG | %s | %v |\n", d(med), med <= 5*time.Second)
		}
	}
	b.WriteString("\nWhere the restore's extra time goes: the verify-backup step (sha256 of the whole file, bbolt's page check and a count of every key) runs before anything on the master is touched; the restore step itself takes about what etcdutl takes (it skips etcdutl's second hash of the copy). ")
	b.WriteString("Peak RSS is the VmHWM of each process, which counts the pages of the database file that bbolt maps: both tools map the whole file, so their peaks follow its size rather than their heap.\n")
	return b.String()
}

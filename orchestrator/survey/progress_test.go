package survey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/progress"
)

// TestProgress checks that a long read nothing can measure says it is
// still going, and that a panic in it (etcd's decoders panic on some
// damaged records) becomes its error instead of ending the survey.
func TestProgress(t *testing.T) {
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = 20 * time.Millisecond
	var lines []string
	logf := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }

	want := errors.New("done")
	err := withProgress(logf, "reading a slow file", func() error { time.Sleep(150 * time.Millisecond); return want })
	if err != want || len(lines) < 2 || !strings.Contains(lines[0], "still reading a slow file") {
		t.Errorf("err %v, lines %q: want the read's error and a line every 20ms", err, lines)
	}

	err = withProgress(logf, "reading a damaged file", func() error { panic("unexpected block type 9") })
	if err == nil || !strings.Contains(err.Error(), "unexpected block type 9") {
		t.Errorf("a panic in the read gave %v", err)
	}
}

// TestSurveyMeters surveys a real data dir with a WAL of some 20 MiB and
// a snapshot of it: the WAL read and the backup's check print lines with
// bytes, a rate and the time left, the last ones the whole size; with
// progress off (--json) they print none.
func TestSurveyMeters(t *testing.T) {
	defer func(d time.Duration) { progress.PollEvery = d }(progress.PollEvery)
	progress.PollEvery = time.Millisecond

	p := etcdtest.NewPKI(t)
	spec := etcdtest.MemberSpec{Name: "m0", DataDir: filepath.Join(t.TempDir(), "etcd"), PeerURL: etcdtest.FreeURL(t), ClientURL: etcdtest.FreeURL(t), State: "new"}
	spec.InitialCluster = spec.Name + "=" + spec.PeerURL
	m := p.Start(t, spec)
	cli := p.Client(t, spec.ClientURL)
	putLarge(t, cli, 320, 64<<10)
	snap := filepath.Join(t.TempDir(), "snapshot.db")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), etcdtest.ClientConfig(t, p, spec.ClientURL), snap); err != nil {
		t.Fatal(err)
	}
	m.Stop()

	var log bytes.Buffer
	rep, err := Run(Options{DataDirs: []string{spec.DataDir}, Backups: []string{snap}, Log: &log,
		Progress: progress.Options{Mode: progress.Lines, Every: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("survey log:\n%s", log.String())
	w := rep.Sources[0].WAL
	if w == nil || w.Bytes < 20<<20 {
		t.Fatalf("the data dir's WAL: %+v, want 20 MiB or more", w)
	}
	// The WAL's total is its records, not its preallocated segment: the
	// 20 MiB written and a little more.
	total, read := checkMeter(t, log.String(), "  read WAL "+w.Dir+": ")
	if total != progress.Bytes(read) || read < 20<<20 || read > 21<<20 {
		t.Errorf("the WAL read counts %s of %s, want the 20 MiB written and their records", progress.Bytes(read), total)
	}
	if total, read := checkMeter(t, log.String(), "  verify snapshot.db: "); total != progress.Bytes(read) {
		t.Errorf("the backup's check ends at %s of %s", progress.Bytes(read), total)
	}

	log.Reset()
	if _, err := Run(Options{DataDirs: []string{spec.DataDir}, Backups: []string{snap}, Log: &log,
		Progress: progress.Options{Mode: progress.ModeFor(&log, true), Every: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if s := log.String(); strings.Contains(s, "  read WAL ") || strings.Contains(s, "  verify snapshot.db:") || !strings.Contains(s, "reading WAL") {
		t.Errorf("with --json the survey's log shows progress (or nothing at all):\n%s", s)
	}
}

// checkMeter wants, among the lines starting with label, at least one
// while the read went on (a part of a total, a rate, the time left), and
// last a summary of what was read. It returns the total the lines gave
// and the bytes read the summary gives (to the MiB).
func checkMeter(t *testing.T, log, label string) (total string, read int64) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, label) {
			lines = append(lines, strings.TrimPrefix(l, label))
		}
	}
	for _, l := range lines {
		if _, rest, ok := strings.Cut(l, " of "); ok && strings.Contains(l, "%), ") && strings.Contains(l, "/s, ") && strings.HasSuffix(l, " left") && !strings.Contains(l, "(100%)") {
			total, _, _ = strings.Cut(rest, " (")
		}
	}
	if total == "" {
		t.Errorf("%q: no line while it reads with a part of a total, a rate and the time left: %q", label, lines)
		return "", 0
	}
	var mib float64
	if _, err := fmt.Sscanf(lines[len(lines)-1], "%f MiB in ", &mib); err != nil {
		t.Errorf("%q ends with %q: want a summary of the MiB read", label, lines[len(lines)-1])
	}
	return total, int64(mib * (1 << 20))
}

// putLarge writes n values of size bytes, a WAL of n×size and more.
func putLarge(t *testing.T, cli *clientv3.Client, n, size int) {
	t.Helper()
	v := strings.Repeat("v", size)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := cli.Put(t.Context(), fmt.Sprintf("/large/%04d", i), v); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

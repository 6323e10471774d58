package progress

import (
	"bytes"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/syncbuf"
)

// clock is a test clock moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

const MiB = 1 << 20

// TestLinesEveryInterval: a non-terminal gets one line per interval, with
// the rate over that interval and the time left at that rate, then a
// summary with the average rate.
func TestLinesEveryInterval(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var out bytes.Buffer
	m := New(&out, "verify snapshot.db", 1000*MiB, Options{Mode: Lines, Every: 5 * time.Second, Now: c.now})

	c.advance(2 * time.Second)
	m.Set(100*MiB, 0) // before the interval: nothing
	c.advance(3 * time.Second)
	m.Set(250*MiB, 0) // 250 MiB in 5 s: 50 MiB/s, 750 MiB left: 15 s
	c.advance(1 * time.Second)
	m.Set(300*MiB, 0) // nothing
	c.advance(4 * time.Second)
	m.Set(450*MiB, 0) // 200 MiB in 5 s: 40 MiB/s, 550 MiB left: 13.75 s
	c.advance(10 * time.Second)
	m.Set(1000*MiB, 0)
	m.Finish()
	m.Finish()
	m.Set(1, 0) // after Finish: nothing

	want := []string{
		"verify snapshot.db: 250.0 MiB of 1000.0 MiB (25%), 50.0 MiB/s, 15s left",
		"verify snapshot.db: 450.0 MiB of 1000.0 MiB (45%), 40.0 MiB/s, 14s left",
		"verify snapshot.db: 1000.0 MiB of 1000.0 MiB (100%), 55.0 MiB/s, 0s left",
		"verify snapshot.db: 1000.0 MiB in 20s (50.0 MiB/s)",
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestUnknownTotal: without a total there is no percentage and no ETA;
// a total given later (a download learns the size) brings them.
func TestUnknownTotal(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	var out bytes.Buffer
	m := New(&out, "download", 0, Options{Mode: Lines, Every: time.Second, Now: c.now})
	r := m.Reader(bytes.NewReader(make([]byte, 3*MiB)))
	buf := make([]byte, MiB)
	c.advance(time.Second)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	c.advance(time.Second)
	m.Set(2*MiB, 4*MiB)
	want := "download: 1.0 MiB, 1.0 MiB/s\ndownload: 2.0 MiB of 4.0 MiB (50%), 1.0 MiB/s, 2s left\n"
	if out.String() != want {
		t.Errorf("got:\n%swant:\n%s", out.String(), want)
	}
}

// TestOffPrintsNothing: --json output stays JSON.
func TestOffPrintsNothing(t *testing.T) {
	var out bytes.Buffer
	m := New(&out, "x", 10, Options{Mode: ModeFor(&out, true)})
	w := m.Writer(io.Discard)
	w.Write(make([]byte, 10))
	m.Finish()
	if out.Len() != 0 {
		t.Errorf("printed %q", out.String())
	}
	if ModeFor(&out, false) != Lines {
		t.Error("a buffer is not a terminal: want Lines")
	}
}

func TestETA(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		rate        float64
		want        time.Duration
		ok          bool
	}{
		{0, 100 * MiB, 10 * MiB, 10 * time.Second, true},
		{90 * MiB, 100 * MiB, 4 * MiB, 3 * time.Second, true}, // 2.5 s rounds up
		{100, 100, 1, 0, true},
		{10, 100, 0, 0, false},
		{200, 100, 5, 0, false},
	} {
		got, ok := ETA(c.done, c.total, c.rate)
		if got != c.want || ok != c.ok {
			t.Errorf("ETA(%d, %d, %g) = %s, %v; want %s, %v", c.done, c.total, c.rate, got, ok, c.want, c.ok)
		}
	}
	if r := Rate(30*MiB, 3*time.Second); r != 10*MiB {
		t.Errorf("Rate = %g", r)
	}
	if r := Rate(1, 0); r != 0 {
		t.Errorf("Rate over no time = %g", r)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 8 << 30: "8.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestBarDraws: Bar mode draws through the library and ends the line.
func TestBarDraws(t *testing.T) {
	var out bytes.Buffer
	m := New(&out, "verify", 4*MiB, Options{Mode: Bar})
	m.Set(4*MiB, 0)
	m.Finish()
	if s := out.String(); !strings.Contains(s, "verify") || !strings.Contains(s, "100%") || !strings.HasSuffix(s, "\n") {
		t.Errorf("bar output %q", s)
	}
}

// TestUnit: a count that is not bytes prints plain numbers and its unit.
func TestUnit(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	var out bytes.Buffer
	m := New(&out, "apply the WAL", 5000, Options{Mode: Lines, Every: time.Second, Now: c.now, Unit: "entries"})
	c.advance(4 * time.Second)
	m.Set(1200, 0)
	c.advance(6 * time.Second)
	m.Set(5000, 0)
	m.Finish()
	want := "apply the WAL: 1200 of 5000 entries (24%), 300 entries/s, 13s left\n" +
		"apply the WAL: 5000 of 5000 entries (100%), 633 entries/s, 0s left\n" +
		"apply the WAL: 5000 entries in 10s (500 entries/s)\n"
	if out.String() != want {
		t.Errorf("got:\n%swant:\n%s", out.String(), want)
	}

	out.Reset()
	m = New(&out, "apply", 10, Options{Mode: Bar, Unit: "entries"})
	m.Set(10, 0)
	m.Finish()
	if s := out.String(); !strings.Contains(s, "10/10") || strings.Contains(s, " B") {
		t.Errorf("bar output %q: want a count of entries, not bytes", s)
	}
}

// TestFollow: work that reports nothing is sampled while it runs, and
// once more at its end; a panic in it reaches the caller.
func TestFollow(t *testing.T) {
	defer func(d time.Duration) { PollEvery = d }(PollEvery)
	PollEvery = 5 * time.Millisecond
	var (
		out  syncbuf.Buffer
		done atomic.Int64
	)
	m := New(&out, "read", 100, Options{Mode: Lines, Every: 10 * time.Millisecond})
	err := m.Follow(done.Load, func() error {
		for range 10 {
			time.Sleep(10 * time.Millisecond)
			done.Add(5)
		}
		done.Store(100)
		return io.EOF
	})
	m.Finish()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err != io.EOF || len(lines) < 3 || !strings.Contains(lines[0], " of 100 B (") || !strings.HasPrefix(lines[len(lines)-1], "read: 100 B in") {
		t.Errorf("err %v, lines:\n%s\nwant the run's error, lines while it ran, and the total at the end", err, out.String())
	}

	defer func() {
		if p := recover(); p != "bad record" {
			t.Errorf("recovered %v, want the run's panic", p)
		}
	}()
	m.Follow(done.Load, func() error { panic("bad record") })
}

// TestEveryEnv: the environment sets the interval when the caller does not.
func TestEveryEnv(t *testing.T) {
	t.Setenv(EveryEnv, "2s")
	c := &clock{t: time.Unix(0, 0)}
	var out bytes.Buffer
	m := New(&out, "x", 0, Options{Mode: Lines, Now: c.now})
	c.advance(2 * time.Second)
	m.Set(1, 0)
	if out.Len() == 0 {
		t.Errorf("no line after 2s with %s=2s", EveryEnv)
	}
}

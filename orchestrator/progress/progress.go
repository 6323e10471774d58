// Package progress shows how far a long read or write is: bytes done,
// rate and time left. On a terminal it draws a live bar
// (github.com/schollz/progressbar); elsewhere (the rescue image's serial
// console, a log file) it prints one plain line every few seconds; with
// --json it prints nothing, so the JSON on stdout stays whole.
//
// A Meter is fed absolute figures through Set or the Func callback
// (func(done, total int64), what backup.VerifySnapshot and boltcheck-style
// walks call), or counts the bytes passing through Reader or Writer.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Mode is how progress is shown.
type Mode int

const (
	// Off shows nothing (--json, or a caller that shows its own).
	Off Mode = iota
	// Lines prints a plain line every Options.Every.
	Lines
	// Bar draws a live bar, redrawn in place: for a terminal only.
	Bar
)

// ModeFor picks the mode for output w: Off with JSON, Bar when w is a
// terminal, Lines otherwise.
func ModeFor(w io.Writer, json bool) Mode {
	if json {
		return Off
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return Bar
	}
	return Lines
}

// DefaultEvery is how often Lines mode prints: often enough that a
// serial console shows the work is alive, rarely enough to stay readable.
const DefaultEvery = 5 * time.Second

// EveryEnv names the environment variable that, set to a Go duration
// ("30s", "10ms"), replaces DefaultEvery: a log that wants fewer lines, or
// a test that wants them sooner.
const EveryEnv = "ETCD_RESCUE_PROGRESS_EVERY"

func defaultEvery() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(EveryEnv)); err == nil && d > 0 {
		return d
	}
	return DefaultEvery
}

// Options tunes a Meter.
type Options struct {
	Mode Mode
	// Every is the interval between lines in Lines mode; 0 means
	// DefaultEvery, or what EveryEnv says.
	Every time.Duration
	// Now is the clock; nil means time.Now. Tests inject theirs.
	Now func() time.Time
	// Unit is what is counted when it is not bytes ("entries"): figures
	// are then printed as plain numbers followed by it.
	Unit string
}

// Meter follows one operation of total bytes (0 or less: unknown).
type Meter struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	total int64
	o     Options
	bar   *progressbar.ProgressBar
	// start is when the Meter was made; last and lastDone are the time
	// and bytes of the last line printed, the window the rate is taken
	// over.
	start, last    time.Time
	done, lastDone int64
	finished       bool
}

// New starts a Meter for label (what is read or written, "verify
// snapshot.db") writing to w.
func New(w io.Writer, label string, total int64, o Options) *Meter {
	if o.Every <= 0 {
		o.Every = defaultEvery()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Meter{w: w, label: label, total: total, o: o}
	m.start = o.Now()
	m.last = m.start
	if o.Mode == Bar {
		max := total
		if max <= 0 {
			max = -1 // the library's spinner for an unknown size
		}
		units := []progressbar.Option{
			progressbar.OptionShowBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionShowTotalBytes(true),
		}
		if o.Unit != "" {
			units = []progressbar.Option{progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString(o.Unit)}
		}
		m.bar = progressbar.NewOptions64(max, append(units,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(label),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)...)
	}
	return m
}

// Set records done bytes of total (total ≤ 0 keeps the one given to New).
func (m *Meter) Set(done, total int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finished {
		return
	}
	if total > 0 && total != m.total {
		m.total = total
		if m.bar != nil {
			m.bar.ChangeMax64(total)
		}
	}
	m.done = done
	switch m.o.Mode {
	case Bar:
		_ = m.bar.Set64(done)
	case Lines:
		if now := m.o.Now(); now.Sub(m.last) >= m.o.Every {
			fmt.Fprintln(m.w, m.line(now))
			m.last, m.lastDone = now, done
		}
	}
}

// Add records n more bytes done.
func (m *Meter) Add(n int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	done := m.done + n
	m.mu.Unlock()
	m.Set(done, 0)
}

// Func is Set as a callback: func(done, total int64).
func (m *Meter) Func() func(done, total int64) {
	return func(done, total int64) { m.Set(done, total) }
}

// Finish prints the final line (Lines) or completes the bar. It is safe
// to call more than once; a nil Meter does nothing.
func (m *Meter) Finish() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finished {
		return
	}
	m.finished = true
	switch m.o.Mode {
	case Bar:
		_ = m.bar.Finish()
	case Lines:
		fmt.Fprintln(m.w, m.summary(m.o.Now()))
	}
}

// Follow runs run, work done by code that reports no progress of its
// own, and while it runs feeds m what sample measures every PollEvery
// (and once more at the end). sample is called from one goroutine at a
// time. A panic in run goes on up the caller's goroutine, where its
// recover sees it.
func (m *Meter) Follow(sample func() int64, run func() error) error {
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(PollEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				m.Set(sample(), 0)
			}
		}
	}()
	var once sync.Once
	stopSampling := func() { once.Do(func() { close(stop); <-stopped }) }
	defer stopSampling()
	err := run()
	stopSampling()
	m.Set(sample(), 0)
	return err
}

// PollEvery is how often Follow samples: often enough for a smooth bar,
// and for a line as soon as its interval has passed.
var PollEvery = 100 * time.Millisecond

// Reader counts the bytes read through r.
func (m *Meter) Reader(r io.Reader) io.Reader { return &countReader{r: r, m: m} }

// Writer counts the bytes written through w.
func (m *Meter) Writer(w io.Writer) io.Writer { return &countWriter{w: w, m: m} }

type countReader struct {
	r io.Reader
	m *Meter
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.m.Add(int64(n))
	return n, err
}

type countWriter struct {
	w io.Writer
	m *Meter
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.m.Add(int64(n))
	return n, err
}

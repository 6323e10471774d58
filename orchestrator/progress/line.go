package progress

import (
	"fmt"
	"strings"
	"time"
)

// line is a Lines-mode line: what, how far, how fast since the last
// line, and the time left at that rate.
//
//	verify snapshot.db: 1.5 GiB of 8.0 GiB (18%), 95.0 MiB/s, 1m10s left
//	apply the WAL: 1200 of 5000 entries (24%), 300 entries/s, 13s left
func (m *Meter) line(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", m.label, m.amount(m.done, m.total <= 0))
	if m.total > 0 {
		fmt.Fprintf(&b, " of %s (%d%%)", m.amount(m.total, true), percent(m.done, m.total))
	}
	r := Rate(m.done-m.lastDone, now.Sub(m.last))
	fmt.Fprintf(&b, ", %s/s", m.amount(int64(r), true))
	if m.total > 0 {
		if eta, ok := ETA(m.done, m.total, r); ok {
			fmt.Fprintf(&b, ", %s left", eta)
		}
	}
	return b.String()
}

// summary is the last line: how much, how long, the average rate.
//
//	verify snapshot.db: 8.0 GiB in 1m30s (91.0 MiB/s)
func (m *Meter) summary(now time.Time) string {
	d := now.Sub(m.start)
	return fmt.Sprintf("%s: %s in %s (%s/s)", m.label, m.amount(m.done, true), d.Round(100*time.Millisecond), m.amount(int64(Rate(m.done, d)), true))
}

// amount formats n bytes, or n of Options.Unit (followed by the unit's
// name when withUnit: "1200 of 5000 entries").
func (m *Meter) amount(n int64, withUnit bool) string {
	switch {
	case m.o.Unit == "":
		return Bytes(n)
	case withUnit:
		return fmt.Sprintf("%d %s", n, m.o.Unit)
	}
	return fmt.Sprintf("%d", n)
}

// Rate is n bytes over d, in bytes per second (0 for no time).
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// ETA is the time left to reach total from done at rate bytes per
// second, rounded to the second; false when it cannot be told (no rate
// yet, or done already past total).
func ETA(done, total int64, rate float64) (time.Duration, bool) {
	if rate <= 0 || done > total {
		return 0, false
	}
	left := time.Duration(float64(total-done) / rate * float64(time.Second))
	return left.Round(time.Second), true
}

func percent(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return min(100, done*100/total)
}

// Bytes formats n in IEC units: 512 B, 1.5 KiB, 8.0 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

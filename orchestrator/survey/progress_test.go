package survey

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestProgress checks that a long read says it is still going, and that a
// panic in it (etcd's decoders panic on some damaged records) becomes its
// error instead of ending the survey.
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

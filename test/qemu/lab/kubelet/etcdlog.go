package kubelet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// warnings copies etcd's warning and error log lines to the console, so a
// lab failure (a peer refused, a cluster ID mismatch) shows in the drill log
// without the full log. At most burst lines per window are shown; the
// rest are counted.
type warnings struct {
	prefix string
	burst  int
	window time.Duration

	mu      sync.Mutex
	buf     []byte
	start   time.Time
	shown   int
	dropped int
}

func newWarnings(prefix string) *warnings {
	return &warnings{prefix: prefix, burst: 20, window: 10 * time.Second}
}

func (w *warnings) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := w.buf[:i]
		w.buf = w.buf[i+1:]
		if s, ok := summarize(line); ok {
			w.emit(s)
		}
	}
	return len(p), nil
}

func (w *warnings) emit(s string) {
	now := time.Now()
	if now.Sub(w.start) > w.window {
		if w.dropped > 0 {
			fmt.Fprintf(os.Stdout, "%s(%d more warnings in %s not shown)\n", w.prefix, w.dropped, w.window)
		}
		w.start, w.shown, w.dropped = now, 0, 0
	}
	if w.shown >= w.burst {
		w.dropped++
		return
	}
	w.shown++
	fmt.Fprintf(os.Stdout, "%s%s\n", w.prefix, s)
}

// slowWarnings are etcd's warnings about slow requests and disks, which a
// TCG virtual machine gives all the time; they say nothing about the drill.
var slowWarnings = map[string]bool{
	"apply request took too long": true,
	"request stats":               true,
	"slow fdatasync":              true,
	"leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk": true,
	"waiting for ReadIndex response took too long, retrying":                                                 true,
	"timed out waiting for read index response (local node might have slow network)":                         true,
}

// summarize turns a zap JSON line of level warn or worse into one short
// line: level, message, then the other fields but time and caller.
func summarize(line []byte) (string, bool) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return "", false
	}
	lvl, _ := m["level"].(string)
	switch lvl {
	case "warn", "error", "dpanic", "panic", "fatal":
	default:
		return "", false
	}
	msg, _ := m["msg"].(string)
	if slowWarnings[msg] {
		return "", false
	}
	var keys []string
	for k := range m {
		switch k {
		case "level", "msg", "ts", "caller", "stacktrace":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", lvl, msg)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, m[k])
	}
	s := b.String()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s, true
}

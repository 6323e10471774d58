package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-rescue/etcd-rescue/image"
	"github.com/etcd-rescue/etcd-rescue/initrd"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/drill"
)

// drillTargetKeys and drillTarget are the drill target: quorum
// lost to full membership within 3 minutes under TCG at 10,000 keys.
const (
	drillTargetKeys = 10000
	drillTarget     = 3 * time.Minute
)

// drillInputs is what `etcd-rescue-lab drill` needs besides root.
type drillInputs struct {
	keys            []int
	kernel, modules string
	etcd            string
	rescueDir       string // pxe files of the rescue image
}

// drillRun is one `etcd-rescue-lab drill` at one key count.
type drillRun struct {
	keys int
	// report is the drill's JSON report (written even when it fails: the
	// phases that finished); nil when it wrote none.
	report *drill.Report
	// failedPhase is the ID of the phase the drill failed in (or a few
	// words when it failed outside one), err its error; both empty when
	// it passed.
	failedPhase, err string
	wall             time.Duration
}

type drillResult struct {
	runs []drillRun
}

// parseKeys reads -drill-keys: key counts separated by commas, empty for
// none.
func parseKeys(s string) ([]int, error) {
	var keys []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 100 {
			return nil, fmt.Errorf("-drill-keys: %q is not a number of keys of at least 100", f)
		}
		keys = append(keys, n)
	}
	return keys, nil
}

// prepareDrill checks the drill's prerequisites and builds its inputs (the
// etcd server the lab masters run, the rescue image's pxe files), before
// any long measurement, so a missing one fails the bench at once.
func prepareDrill(c config, keys []int) (*drillInputs, error) {
	in := &drillInputs{keys: keys, kernel: c.kernel, modules: c.modules, etcd: c.etcd}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(c.lab); err != nil {
		return nil, fmt.Errorf("%s: %w (run make lab first, or pass -drill-keys '' to leave the drill out)", c.lab, err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the drill creates a network namespace, a bridge and tap devices: run the bench as root, or pass -drill-keys '' to leave the drill out")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4", "debugfs", "e2fsck", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("the drill needs %s: run `make deps`", tool)
		}
	}
	if in.kernel == "" {
		root, err := initrd.FindModuleRoot("")
		if err != nil {
			return nil, err
		}
		if in.kernel, in.modules, err = image.CachedKernel(root); err != nil {
			return nil, fmt.Errorf("drill: %w (or pass -kernel and -modules)", err)
		}
	} else if in.modules == "" {
		return nil, errors.New("-modules is required with -kernel: the kernel's /lib/modules/<version> folder")
	}
	if in.etcd == "" {
		in.etcd = filepath.Join(c.cache, "etcd")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", in.etcd, "go.etcd.io/etcd/server/v3")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build etcd: %v\n%s", err, b)
		}
	}
	in.rescueDir = filepath.Join(c.work, "drill-image")
	os.RemoveAll(in.rescueDir)
	cmd := exec.Command(c.rescue, "build-image", "--format", "pxe", "--out", in.rescueDir, "--binary", c.rescue,
		"--kernel", in.kernel, "--modules", in.modules)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build-image --format pxe for the drill: %v\n%s", err, b)
	}
	return in, nil
}

// measureDrill runs the drill once per key count under TCG. A drill that
// fails is recorded with its phase and error; the next one still runs.
func measureDrill(c config, in *drillInputs) *drillResult {
	r := &drillResult{}
	for _, n := range in.keys {
		run := runDrill(c, in, n)
		if run.err != "" {
			fmt.Fprintf(os.Stderr, "bench: the %d-key drill failed in phase %q: %s\n", n, run.failedPhase, run.err)
		}
		r.runs = append(r.runs, run)
	}
	return r
}

// phaseLine is the drill's progress line on stderr: "=== phase ID: TITLE"
// when a phase starts, "=== phase ID: done in D" when it ends.
var phaseLine = regexp.MustCompile(`^=== phase ([a-z0-9-]+): (?:(done in \S+)$|.*)`)

// failedIn is how the drill's error names the phase that failed (by ID).
var failedIn = regexp.MustCompile(`phase "([^"]*)"`)

func runDrill(c config, in *drillInputs, keys int) drillRun {
	run := drillRun{keys: keys}
	jsonFile := filepath.Join(c.work, fmt.Sprintf("drill-%d.json", keys))
	os.Remove(jsonFile)
	ctx, cancel := context.WithTimeout(context.Background(), c.drillTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.lab, "drill", "--keys", strconv.Itoa(keys), "--accel", "tcg",
		"--image", in.rescueDir, "--kernel", in.kernel, "--modules", in.modules, "--etcd", in.etcd, "--json-file", jsonFile)
	// On timeout the drill gets SIGTERM so it powers off its VMs and
	// removes its network namespace; it is killed if it has not ended
	// a few minutes later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Minute
	var stdout bytes.Buffer
	var stderr []string
	running := "" // the phase that started and has not ended
	cmd.Stdout = &stdout
	cmd.Stderr = &lineWriter{line: func(l string) {
		stderr = append(stderr, l)
		if m := phaseLine.FindStringSubmatch(l); m != nil {
			fmt.Printf("drill %d keys: %s\n", keys, strings.TrimPrefix(l, "=== "))
			if m[2] == "" {
				running = m[1]
			} else {
				running = ""
			}
		}
	}}
	fmt.Printf("drill %d keys: started\n", keys)
	start := time.Now()
	err := cmd.Run()
	run.wall = time.Since(start)
	fmt.Print(stdout.String())
	if b, rerr := os.ReadFile(jsonFile); rerr == nil {
		var rep drill.Report
		if json.Unmarshal(b, &rep) == nil {
			run.report = &rep
		}
	}
	if err == nil {
		if run.report == nil {
			run.failedPhase, run.err = "report", "the drill passed but wrote no JSON report to "+jsonFile
		}
		return run
	}
	run.err = drillError(stderr, err)
	if ctx.Err() != nil {
		run.err = fmt.Sprintf("no result within -drill-timeout %s (%v); %s", c.drillTimeout, err, run.err)
	}
	switch m := failedIn.FindStringSubmatch(run.err); {
	case run.report != nil && run.report.FailedPhase != "":
		run.failedPhase = run.report.FailedPhase
	case m != nil:
		run.failedPhase = m[1]
	case running != "":
		run.failedPhase = running
	default:
		run.failedPhase = "setup (before the first phase)"
	}
	return run
}

// drillError is the drill's own error message from its stderr
// ("etcd-rescue-lab: DRILL-FAILED: phase ...: ..." and the lines after it), or
// the tail of its stderr and the exit status when there is none.
func drillError(stderr []string, exitErr error) string {
	for i, l := range stderr {
		if _, msg, ok := strings.Cut(l, "DRILL-FAILED: "); ok {
			return strings.TrimSpace(strings.Join(append([]string{msg}, stderr[i+1:]...), "\n"))
		}
	}
	tail := stderr[max(0, len(stderr)-20):]
	return strings.TrimSpace(fmt.Sprintf("%v\n%s", exitErr, strings.Join(tail, "\n")))
}

// lineWriter calls line for each complete line written to it.
type lineWriter struct {
	buf  []byte
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// recoveryPhases are the phases, one column each in the short
// table: the restore on the survivor and each join.
var recoveryPhases = []string{drill.PhaseRestore, drill.PhaseJoin1, drill.PhaseJoin2}

// phases lists the phase IDs over all runs, in the drill's order, and the
// title each is shown with (the newest run's, where one reported it).
func (r *drillResult) phases() (ids []string, titles map[string]string) {
	titles = map[string]string{}
	add := func(id, title string) {
		if id == "" {
			return
		}
		if _, seen := titles[id]; !seen {
			ids = append(ids, id)
			titles[id] = id
		}
		if title != "" {
			titles[id] = title
		}
	}
	for _, run := range r.runs {
		if run.report != nil {
			for _, p := range run.report.Phases {
				add(p.ID, p.Name)
			}
		}
		add(run.failedPhase, "")
	}
	return ids, titles
}

// cell is a phase's time in one run: seconds, FAILED, or not run.
func (run drillRun) cell(id string) string {
	if run.report != nil {
		for _, p := range run.report.Phases {
			if p.ID == id {
				return fmt.Sprintf("%.1f", p.Seconds)
			}
		}
	}
	if run.err != "" && run.failedPhase == id {
		return "**failed**"
	}
	return "not run"
}

func secs(s float64) string { return d(time.Duration(s * float64(time.Second))) }

// recovery is quorum lost to full membership, when the drill got there.
func (run drillRun) recovery() (time.Duration, bool) {
	if run.report == nil || run.report.Recovery == 0 {
		return 0, false
	}
	return time.Duration(run.report.Recovery * float64(time.Second)), true
}

func (run drillRun) total() string {
	t := run.wall.Seconds()
	if run.report != nil && run.report.Total > 0 {
		t = run.report.Total
	}
	if run.err != "" {
		return secs(t) + " (failed)"
	}
	return secs(t)
}

func (r *drillResult) markdown() string {
	var b strings.Builder
	b.WriteString("\n## Drill: quorum lost → full membership on QEMU VMs (`etcd-rescue-lab drill`, TCG)\n\n")
	b.WriteString("Three OpenShift 4.3 masters (QEMU under TCG, each with its own disk) form a TLS etcd cluster; the keys are written, `etcd-rescue backup` takes a backup, keys/20 more are written (to be lost), two masters are killed, the survivor is restored by the rescue image (pxe files) and boots a one-member cluster, and two new masters join through it with the rescue image. ")
	b.WriteString("Then every member is checked (voting, equal HashKV, every key from before the backup and none from after), an old master that comes back must be refused, and the survivor's old data dir must be kept. Seconds of each phase as the drill reports them.\n\n")
	b.WriteString("| phase |")
	for _, run := range r.runs {
		fmt.Fprintf(&b, " %d keys |", run.keys)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(r.runs)) + "\n")
	ids, titles := r.phases()
	for _, id := range ids {
		fmt.Fprintf(&b, "| %s (`%s`) |", titles[id], id)
		for _, run := range r.runs {
			fmt.Fprintf(&b, " %s |", run.cell(id))
		}
		b.WriteString("\n")
	}
	b.WriteString("| **quorum lost → full membership** (loss, restore, the survivor's OS, both joins) |")
	for _, run := range r.runs {
		if t, ok := run.recovery(); ok {
			fmt.Fprintf(&b, " **%.1f** |", t.Seconds())
		} else {
			b.WriteString(" not reached |")
		}
	}
	b.WriteString("\n| whole drill (with the lab OS build, the checks after recovery and the teardown) |")
	for _, run := range r.runs {
		fmt.Fprintf(&b, " %s |", strings.TrimSuffix(run.total(), " (failed)"))
	}
	b.WriteString("\n\n")

	// The items, one row per key count: the restore on the
	// survivor and each join (when some drill reached them).
	var picked []string
	b.WriteString("| keys |")
	for _, id := range ids {
		if slices.Contains(recoveryPhases, id) {
			picked = append(picked, id)
			name, _, _ := strings.Cut(titles[id], " (")
			fmt.Fprintf(&b, " %s |", name)
		}
	}
	b.WriteString(" quorum lost → full membership | whole drill | result |\n|---|" + strings.Repeat("---|", len(picked)) + "---|---|---|\n")
	for _, run := range r.runs {
		fmt.Fprintf(&b, "| %d |", run.keys)
		for _, p := range picked {
			c := run.cell(p)
			if s, err := strconv.ParseFloat(c, 64); err == nil {
				c = secs(s)
			}
			fmt.Fprintf(&b, " %s |", c)
		}
		if t, ok := run.recovery(); ok {
			fmt.Fprintf(&b, " %s |", d(t))
		} else {
			b.WriteString(" not reached |")
		}
		fmt.Fprintf(&b, " %s |", run.total())
		if run.err == "" {
			b.WriteString(" passed |\n")
		} else {
			fmt.Fprintf(&b, " failed in phase %q |\n", run.failedPhase)
		}
	}
	for _, run := range r.runs {
		if run.err != "" {
			fmt.Fprintf(&b, "\nThe %d-key drill failed in phase %q after %s:\n\n```\n%s\n```\n", run.keys, run.failedPhase, d(run.wall), clip(run.err, 40))
		}
		if run.report != nil && run.report.Accel != "tcg" {
			fmt.Fprintf(&b, "\nThe %d-key drill ran under %s, not TCG.\n", run.keys, run.report.Accel)
		}
	}
	return b.String()
}

// targetRow is the targets table's row for the drill.
func (r *drillResult) targetRow() string {
	const target = "drill quorum lost → full membership ≤ 3 min under TCG at 10k keys"
	for _, run := range r.runs {
		if run.keys != drillTargetKeys {
			continue
		}
		t, ok := run.recovery()
		if !ok {
			return fmt.Sprintf("| %s | failed in phase %q | false |\n", target, run.failedPhase)
		}
		met := t <= drillTarget && run.report.Accel == "tcg"
		return fmt.Sprintf("| %s | %s (whole drill %s) | %v |\n", target, d(t), run.total(), met)
	}
	var ran []string
	for _, run := range r.runs {
		ran = append(ran, strconv.Itoa(run.keys))
	}
	return fmt.Sprintf("| %s | not measured (the drill ran at %s keys) | — |\n", target, strings.Join(ran, ", "))
}

// clip keeps the first n lines of s.
func clip(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n… (%d more lines)", len(lines)-n)
}

// spliceDrill replaces the drill's section of a results file and its row
// in the targets, for a run of the drill part alone.
func spliceDrill(doc string, r *drillResult) string {
	doc = spliceSection(doc, "\n## Drill", r.markdown())
	row := strings.TrimSuffix(r.targetRow(), "\n")
	if row == "" {
		return doc
	}
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "| drill ") {
			lines[i] = row
		}
	}
	return strings.Join(lines, "\n")
}

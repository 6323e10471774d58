package kubelet

import (
	"bufio"
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
)

// WantsDir is where systemd finds the services enabled at boot.
const WantsDir = "etc/systemd/system/multi-user.target.wants"

// unit is one enabled systemd service the lab runs.
type unit struct {
	name       string
	cmd        *exec.Cmd
	done       chan struct{}
	exitOK     bool
	finished   bool // exited and its policy says it stays down
	next       time.Time
	restart    string
	restartSec time.Duration
}

// serviceFile is what the lab reads of a .service file.
type serviceFile struct {
	execStart  []string
	condition  string // ConditionPathExists
	restart    string
	restartSec time.Duration
}

func (k *kubelet) syncUnits() {
	dir := filepath.Join(Root, WantsDir)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".service") {
			continue
		}
		u := k.units[name]
		if u != nil && (u.running() || u.finished || time.Now().Before(u.next)) {
			continue
		}
		if u != nil && u.cmd != nil {
			// It exited: apply Restart=.
			u.cmd = nil
			if u.restart == "always" || (u.restart == "on-failure" && !u.exitOK) {
				u.next = time.Now().Add(u.restartSec)
				logf("unit %s: restarting in %s (Restart=%s)", name, u.restartSec, u.restart)
				continue
			}
			u.finished = true
			logf("unit %s: stays stopped (Restart=%s)", name, orDefault(u.restart, "no"))
			continue
		}
		sf, err := readService(dir, name)
		if err != nil {
			logf("unit %s: %v", name, err)
			k.units[name] = &unit{name: name, finished: true}
			continue
		}
		if sf.condition != "" {
			if _, err := os.Stat(filepath.Join(Root, sf.condition)); err != nil {
				logf("unit %s: ConditionPathExists=%s not met: skipped", name, sf.condition)
				k.units[name] = &unit{name: name, finished: true}
				continue
			}
		}
		if u == nil {
			u = &unit{name: name}
			k.units[name] = u
		}
		u.restart, u.restartSec = sf.restart, sf.restartSec
		if err := u.start(sf.execStart); err != nil {
			logf("unit %s: start: %v", name, err)
			u.next = time.Now().Add(5 * time.Second)
		}
	}
}

// readService resolves the enablement link and reads the unit file.
func readService(wantsDir, name string) (*serviceFile, error) {
	p := filepath.Join(wantsDir, name)
	if l, err := os.Readlink(p); err == nil {
		if filepath.IsAbs(l) {
			p = filepath.Join(Root, l)
		} else {
			p = filepath.Join(wantsDir, l)
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("unit file: %w", err)
	}
	defer f.Close()
	return parseService(f)
}

func parseService(r io.Reader) (*serviceFile, error) {
	sf := &serviceFile{restart: "no", restartSec: 100 * time.Millisecond}
	sc := bufio.NewScanner(r)
	section := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %q is not key=value", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch section + "." + k {
		case "Unit.ConditionPathExists":
			sf.condition = v
		case "Service.ExecStart":
			// The recovery service's command line has no quoting.
			args := strings.Fields(v)
			if len(args) == 0 || strings.ContainsAny(v, `"'\`) {
				return nil, fmt.Errorf("ExecStart %q: the lab runs plain word lists only", v)
			}
			sf.execStart = args
		case "Service.Restart":
			sf.restart = v
		case "Service.RestartSec":
			if d, err := time.ParseDuration(v); err == nil {
				sf.restartSec = d
			} else if n, err := strconv.Atoi(v); err == nil {
				sf.restartSec = time.Duration(n) * time.Second
			} else {
				return nil, fmt.Errorf("RestartSec %q is not a duration", v)
			}
		case "Service.Type":
			if v != "simple" && v != "exec" && v != "oneshot" {
				return nil, fmt.Errorf("Type=%s is not supported by the lab", v)
			}
		}
	}
	if len(sf.execStart) == 0 {
		return nil, errNoExec
	}
	return sf, sc.Err()
}

// start runs the service chrooted into the master's root, with /proc and
// /dev as systemd would see them.
func (u *unit) start(argv []string) error {
	for _, m := range []struct{ src, dst, fstype string }{{"proc", "proc", "proc"}, {"/dev", "dev", ""}} {
		dst := filepath.Join(Root, m.dst)
		if isMountPoint(dst) {
			continue
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		var err error
		if m.fstype == "" {
			err = unix.Mount(m.src, dst, "", unix.MS_BIND, "")
		} else {
			err = unix.Mount(m.src, dst, m.fstype, 0, "")
		}
		if err != nil {
			return fmt.Errorf("mount %s: %w", dst, err)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Path = argv[0] // resolved inside the chroot
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root"}
	cmd.Dir = "/"
	pw := &prefixWriter{prefix: "unit " + u.name + ": "}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: Root, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	u.cmd, u.done = cmd, make(chan struct{})
	logf("unit %s: started (pid %d): %s", u.name, cmd.Process.Pid, strings.Join(argv, " "))
	go func(done chan struct{}) {
		err := cmd.Wait()
		u.exitOK = err == nil
		logf("unit %s: exited: %v", u.name, errOr(err))
		close(done)
	}(u.done)
	return nil
}

func (u *unit) running() bool {
	if u.cmd == nil {
		return false
	}
	select {
	case <-u.done:
		return false
	default:
		return true
	}
}

func isMountPoint(p string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == p {
			return true
		}
	}
	return false
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// prefixWriter prints a process's lines on the console with a prefix.
type prefixWriter struct {
	prefix string
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(os.Stdout, "%s%s\n", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

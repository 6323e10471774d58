package kubelet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
)

// ManifestDir is the kubelet's static pod folder on the master's root.
const ManifestDir = "etc/kubernetes/manifests"

// EtcdBinary is the etcd the lab OS carries (the etcd image's binary).
const EtcdBinary = "/bin/etcd"

// LogDir keeps the processes' output (the console shows the kubelet's lines).
const LogDir = "/run/lab/logs"

type kubelet struct {
	cfg   config
	pods  map[string]*pod
	units map[string]*unit
	// refused remembers the last refusal per file, to print it once.
	refused map[string]string
}

// pod is one static pod the lab runs (the etcd pod).
type pod struct {
	file    string
	hash    [32]byte
	cmd     *exec.Cmd
	done    chan struct{}
	starts  int
	backoff time.Duration
	next    time.Time
}

func (k *kubelet) loop(ctx context.Context) {
	k.refused = map[string]string{}
	if err := os.MkdirAll(LogDir, 0o755); err != nil {
		logf("log folder: %v", err)
	}
	for {
		k.syncPods()
		k.syncUnits()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (k *kubelet) syncPods() {
	dir := filepath.Join(Root, ManifestDir)
	ents, _ := os.ReadDir(dir)
	seen := map[string]bool{}
	var files []string
	for _, e := range ents {
		if e.Type().IsRegular() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml") || strings.HasSuffix(e.Name(), ".json")) {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	for _, name := range files {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pd, err := decodePod(b)
		if err != nil {
			k.refuse(name, fmt.Sprintf("refused static pod %s: %v", name, err))
			continue
		}
		if !runsEtcd(pd) {
			k.refuse(name, fmt.Sprintf("static pod %s (%s): valid; not run in the lab, which runs only etcd", name, pd.Name))
			continue
		}
		delete(k.refused, name)
		seen[name] = true
		k.syncEtcd(name, p, b, pd)
	}
	for name, pd := range k.pods {
		if !seen[name] {
			logf("%s: manifest removed: stopping etcd", name)
			pd.stop()
			delete(k.pods, name)
		}
	}
}

func (k *kubelet) refuse(name, msg string) {
	if k.refused[name] != msg {
		logf("%s", msg)
		k.refused[name] = msg
	}
	if pd, ok := k.pods[name]; ok && strings.HasPrefix(msg, "refused") {
		logf("%s: stopping etcd: its manifest is now refused", name)
		pd.stop()
		delete(k.pods, name)
	}
}

func runsEtcd(p *corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		if len(c.Command) > 0 && (filepath.Base(c.Command[0]) == "etcd" || strings.Contains(strings.Join(c.Command, " "), "exec etcd")) {
			return true
		}
	}
	return false
}

// syncEtcd starts etcd when it is not running (after a back-off when it
// exited), and restarts it when its manifest changed.
func (k *kubelet) syncEtcd(name, path string, b []byte, pd *corev1.Pod) {
	h := sha256.Sum256(b)
	cur := k.pods[name]
	if cur != nil && cur.hash != h {
		logf("%s: manifest changed: restarting etcd", name)
		cur.stop()
		cur.hash, cur.backoff, cur.next = h, 0, time.Time{}
	}
	if cur == nil {
		cur = &pod{file: name, hash: h}
		k.pods[name] = cur
	}
	if cur.running() || time.Now().Before(cur.next) {
		return
	}
	if cur.cmd != nil {
		// It exited: back off like the kubelet (shorter, for the lab).
		if cur.backoff == 0 {
			cur.backoff = time.Second
		} else if cur.backoff < 10*time.Second {
			cur.backoff *= 2
		}
		cur.cmd = nil
		cur.next = time.Now().Add(cur.backoff)
		return
	}
	if err := k.startEtcd(cur, path, pd); err != nil {
		logf("%s: cannot start etcd: %v", name, err)
		if cur.backoff < 10*time.Second {
			cur.backoff += 2 * time.Second
		}
		cur.next = time.Now().Add(cur.backoff)
	}
}

func (k *kubelet) startEtcd(cur *pod, path string, pd *corev1.Pod) error {
	m, err := manifest.Load(path)
	if err != nil {
		return err
	}
	files := map[string]string{}
	if domain := discoveryDomain(pd); domain != "" {
		env, err := k.discover(domain)
		if err != nil {
			return fmt.Errorf("discovery init container: %w", err)
		}
		files["/run/etcd/environment"] = env
	}
	inv, err := m.Invocation(manifest.Runtime{Root: Root, NodeName: k.cfg.node, Files: files})
	if err != nil {
		return err
	}
	for _, mt := range inv.Mounts {
		if _, err := os.Stat(filepath.Join(Root, mt.HostPath)); err != nil && mt.HostPath != "/run/etcd" {
			// The kubelet creates a missing hostPath directory (type "").
			if err := os.MkdirAll(filepath.Join(Root, mt.HostPath), 0o755); err != nil {
				return err
			}
		}
	}
	argv, env := inv.OnHost(Root)
	logPath := filepath.Join(LogDir, "etcd.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(EtcdBinary, argv[1:]...)
	cmd.Env = append(env, "PATH=/bin")
	out := io.MultiWriter(lf, newWarnings(fmt.Sprintf("etcd[%d]: ", cur.starts+1)))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return err
	}
	cur.starts++
	cur.cmd = cmd
	cur.done = make(chan struct{})
	logf("%s: etcd started (pid %d, start %d): %s", cur.file, cmd.Process.Pid, cur.starts, strings.Join(argv, " "))
	go func(done chan struct{}, start int) {
		err := cmd.Wait()
		lf.Close()
		logf("%s: etcd exited (start %d): %v; last lines of %s:\n%s", cur.file, start, errOr(err), logPath, tail(logPath, 6))
		close(done)
	}(cur.done, cur.starts)
	return nil
}

func errOr(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

func (p *pod) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after 10 seconds, as the kubelet does.
func (p *pod) stop() {
	if !p.running() {
		p.cmd = nil
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// discoveryDomain is the --discovery-srv domain of the pod's discovery
// init container (OpenShift 4.3), or "".
func discoveryDomain(p *corev1.Pod) string {
	for _, c := range p.Spec.InitContainers {
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			if v, ok := strings.CutPrefix(a, "--discovery-srv="); ok {
				return v
			}
		}
	}
	return ""
}

// discover does what OpenShift's discovery init container does: find, in
// the _etcd-server-ssl._tcp SRV records of domain, the target whose address
// is this node's, and write the etcd environment for it.
func (k *kubelet) discover(domain string) (string, error) {
	_, srvs, err := net.LookupSRV("etcd-server-ssl", "tcp", domain)
	if err != nil {
		return "", fmt.Errorf("SRV _etcd-server-ssl._tcp.%s: %w", domain, err)
	}
	var seen []string
	for _, s := range srvs {
		addrs, err := net.LookupHost(s.Target)
		if err != nil {
			seen = append(seen, s.Target+": "+err.Error())
			continue
		}
		for _, a := range addrs {
			if a == k.cfg.ip {
				name := strings.TrimSuffix(s.Target, ".")
				return fmt.Sprintf("ETCD_IPV4_ADDRESS=%s\nETCD_DNS_NAME=%s\nETCD_WILDCARD_DNS_NAME=*.%s\n", k.cfg.ip, name, domain), nil
			}
		}
		seen = append(seen, s.Target+" is "+strings.Join(addrs, ","))
	}
	return "", fmt.Errorf("no SRV target of _etcd-server-ssl._tcp.%s resolves to this node's %s (%s)", domain, k.cfg.ip, strings.Join(seen, "; "))
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var out []string
	for _, l := range lines {
		s := string(l)
		if len(s) > 400 {
			s = s[:400] + "…"
		}
		out = append(out, "  | "+s)
	}
	return strings.Join(out, "\n")
}

var errNoExec = errors.New("no ExecStart")

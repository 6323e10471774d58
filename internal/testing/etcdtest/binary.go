package etcdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/tmpdirs"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of a real etcd server binary built from
// go.etcd.io/etcd/server/v3 at the version go.mod requires.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		// Shared by the test binary's tests, so not removed at a test's
		// end: a later test process removes it once this one has ended.
		dir, err := tmpdirs.Make("etcd-rescue-etcd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "etcd")
		cmd := exec.Command("go", "build", "-o", binPath, "go.etcd.io/etcd/server/v3")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build etcd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Process is an etcd server running as a child process.
type Process struct {
	Cmd *exec.Cmd
	Log *strings.Builder
	mu  sync.Mutex
}

// StartProcess runs the etcd binary with argv[1:] and env, and stops it at
// test cleanup.
func StartProcess(t testing.TB, argv, env []string) *Process {
	t.Helper()
	return StartBinary(t, Binary(t), argv, env)
}

// StartBinary is StartProcess with a given etcd binary (another version).
func StartBinary(t testing.TB, bin string, argv, env []string) *Process {
	t.Helper()
	p := &Process{Log: &strings.Builder{}}
	p.Cmd = exec.Command(bin, argv[1:]...)
	p.Cmd.Env = env
	p.Cmd.Stdout = lockedWriter{p}
	p.Cmd.Stderr = lockedWriter{p}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

type lockedWriter struct{ p *Process }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.Log.Write(b)
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Log.String()
}

// Stop ends the process (SIGTERM, then SIGKILL after 10s).
func (p *Process) Stop() {
	if p.Cmd.Process == nil || p.Cmd.ProcessState != nil {
		return
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.Cmd.Process.Kill()
		<-done
	}
}

// WaitHealthy waits until the endpoint answers a linearizable read.
func WaitHealthy(t testing.TB, cli *clientv3.Client, p *Process, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if p != nil && p.Cmd.ProcessState != nil {
			t.Fatalf("etcd exited: %v\n%s", p.Cmd.ProcessState, p.Output())
		}
		if time.Now().After(deadline) {
			out := ""
			if p != nil {
				out = p.Output()
			}
			t.Fatalf("etcd not healthy after %s: %v\n%s", timeout, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// CompatVersions are the etcd versions real clusters run that the
// compatibility tests restore for: 3.3 (OpenShift 4.1–4.3), 3.5 and 3.6
// built by scripts/build-etcd.sh, Debian's etcd-server (3.4), and the
// version etcd-rescue links.
var CompatVersions = []string{"3.3.27", "3.4.23", "3.5.35", "3.6.16", "3.7.3"}

// VersionBinary returns an etcd server binary of the given version.
func VersionBinary(t testing.TB, version string) string {
	t.Helper()
	var bin string
	switch {
	case strings.HasPrefix(version, "3.7."):
		bin = Binary(t)
	case strings.HasPrefix(version, "3.4."):
		bin = "/usr/bin/etcd" // Debian's etcd-server, installed by make deps
	default:
		bin = filepath.Join(moduleRoot(t), ".cache", "etcd", version, "etcd")
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "etcd Version: "+version) {
		t.Fatalf("etcd %s not found at %s (%v %s): `make deps etcd-versions` installs and builds it (make test runs both)", version, bin, err, out)
	}
	return bin
}

func moduleRoot(t testing.TB) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

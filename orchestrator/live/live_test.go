package live

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtime is an in-process CRI runtime served over a real unix socket with
// gRPC: containers run until StopContainer or the test's kubelet stops them.
type runtime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	mu         sync.Mutex
	containers []*runtimeapi.Container
	stopCalls  []string
	ignoreStop bool
}

func (r *runtime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "test-runtime", RuntimeApiVersion: "v1"}, nil
}

func (r *runtime) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runtimeapi.Container
	for _, c := range r.containers {
		if f := req.GetFilter().GetState(); f != nil && f.State != c.State {
			continue
		}
		out = append(out, c)
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

func (r *runtime) StopContainer(_ context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopCalls = append(r.stopCalls, req.ContainerId)
	if !r.ignoreStop {
		r.exit(func(c *runtimeapi.Container) bool { return c.Id == req.ContainerId })
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

func (r *runtime) exit(match func(*runtimeapi.Container) bool) {
	for _, c := range r.containers {
		if match(c) {
			c.State = runtimeapi.ContainerState_CONTAINER_EXITED
		}
	}
}

// kubeletStops plays the kubelet stopping a pod whose manifest was removed.
func (r *runtime) kubeletStops(pod string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exit(func(c *runtimeapi.Container) bool { return c.Labels["io.kubernetes.pod.name"] == pod })
}

func (r *runtime) add(id, ns, pod, name string) {
	r.containers = append(r.containers, &runtimeapi.Container{
		Id: id, Metadata: &runtimeapi.ContainerMetadata{Name: name},
		State:  runtimeapi.ContainerState_CONTAINER_RUNNING,
		Labels: map[string]string{"io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.name": pod},
	})
}

func serveCRI(t *testing.T, r *runtime) *CRI {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "crio.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(s, r)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	c, err := DialCRI(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Poll, c.Grace, c.Timeout = 20*time.Millisecond, 10*time.Second, 20*time.Second
	return c
}

func masterRuntime() *runtime {
	r := &runtime{}
	r.add("a1", "openshift-etcd", "etcd-member-master-0", "etcd-member")
	r.add("a2", "openshift-etcd", "etcd-member-master-0", "etcd-metrics")
	r.add("b1", "openshift-kube-apiserver", "kube-apiserver-master-0", "kube-apiserver")
	r.add("c1", "openshift-dns", "dns-default-x7k2p", "dns")
	return r
}

var staticPods = []PodRef{{"openshift-etcd", "etcd-member"}, {"openshift-kube-apiserver", "kube-apiserver"}}

func TestWaitPodsGoneWaitsForTheKubelet(t *testing.T) {
	r := masterRuntime()
	c := serveCRI(t, r)
	go func() {
		time.Sleep(100 * time.Millisecond)
		r.kubeletStops("kube-apiserver-master-0")
		time.Sleep(100 * time.Millisecond)
		r.kubeletStops("etcd-member-master-0")
	}()
	start := time.Now()
	if err := c.WaitPodsGone(context.Background(), staticPods); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Fatal("returned before the kubelet stopped the pods")
	}
	if len(r.stopCalls) != 0 {
		t.Fatalf("stopped containers %v although the kubelet did", r.stopCalls)
	}
	running, _ := c.Running(context.Background(), []PodRef{{"openshift-dns", "dns-default"}})
	if len(running) != 1 {
		t.Fatal("a pod that is not a static pod was touched")
	}
}

func TestWaitPodsGoneStopsWhatTheKubeletLeaves(t *testing.T) {
	r := masterRuntime()
	c := serveCRI(t, r)
	c.Grace = 100 * time.Millisecond
	if err := c.WaitPodsGone(context.Background(), staticPods); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.stopCalls, ","); got != "a1,a2,b1" {
		t.Fatalf("stopped %s, want the static pods' containers a1,a2,b1", got)
	}
}

func TestWaitPodsGoneGivesUp(t *testing.T) {
	r := masterRuntime()
	r.ignoreStop = true
	c := serveCRI(t, r)
	c.Grace, c.Timeout = 50*time.Millisecond, 300*time.Millisecond
	err := c.WaitPodsGone(context.Background(), staticPods)
	if err == nil || !strings.Contains(err.Error(), "etcd-member-master-0/etcd-member") {
		t.Fatalf("err = %v, want it to name the running containers", err)
	}
}

// systemd is systemd's Manager interface on a private D-Bus, as far as
// the kubelet steps use it.
type systemd struct {
	conn   *godbus.Conn
	mu     sync.Mutex
	calls  []string
	result string
}

func (s *systemd) job(verb, unit string) (godbus.ObjectPath, *godbus.Error) {
	s.mu.Lock()
	s.calls = append(s.calls, verb+" "+unit)
	n := len(s.calls)
	s.mu.Unlock()
	path := godbus.ObjectPath("/org/freedesktop/systemd1/job/" + string(rune('0'+n)))
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved", uint32(n), path, unit, s.result)
	}()
	return path, nil
}

func (s *systemd) StartUnit(unit, mode string) (godbus.ObjectPath, *godbus.Error) {
	return s.job("start", unit)
}

func (s *systemd) StopUnit(unit, mode string) (godbus.ObjectPath, *godbus.Error) {
	return s.job("stop", unit)
}

func (s *systemd) Reload() *godbus.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "daemon-reload")
	return nil
}

func privateBus(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address=1", "--address=unix:path="+filepath.Join(dir, "bus"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-daemon (Debian package dbus-daemon, installed by make deps): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(addr)
}

func TestKubeletThroughSystemdDBus(t *testing.T) {
	addr := privateBus(t)
	conn, err := godbus.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Auth(nil); err != nil {
		t.Fatal(err)
	}
	if err := conn.Hello(); err != nil {
		t.Fatal(err)
	}
	sd := &systemd{conn: conn, result: "done"}
	if err := conn.Export(sd, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.RequestName("org.freedesktop.systemd1", godbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	h := &Host{Systemd: &Systemd{Dial: DialAddress(addr)}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.StopKubelet(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.StartKubelet(ctx); err != nil {
		t.Fatal(err)
	}
	sd.mu.Lock()
	got := strings.Join(sd.calls, ", ")
	sd.mu.Unlock()
	if got != "stop kubelet.service, daemon-reload, start kubelet.service" {
		t.Fatalf("systemd saw %q", got)
	}
	sd.result = "failed"
	if err := h.StopKubelet(ctx); err == nil || !strings.Contains(err.Error(), `job ended "failed"`) {
		t.Fatalf("a failed job: err = %v", err)
	}
}

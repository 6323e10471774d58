package restore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/live"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

// host records what an online restore asks of the live master, and checks
// that the kubelet's folder is empty while the pods are waited for.
type host struct {
	t           *testing.T
	manifestDir string
	mu          sync.Mutex
	calls       []string
}

func (h *host) log(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, s)
}

func (h *host) StopKubelet(context.Context) error  { h.log("stop-kubelet"); return nil }
func (h *host) StartKubelet(context.Context) error { h.log("start-kubelet"); return nil }
func (h *host) WaitPodsGone(_ context.Context, pods []live.PodRef) error {
	entries, _ := os.ReadDir(h.manifestDir)
	if len(entries) != 0 {
		h.t.Errorf("waiting for pods while %d manifests are still in %s", len(entries), h.manifestDir)
	}
	var names []string
	for _, p := range pods {
		names = append(names, p.String())
	}
	h.log("wait " + strings.Join(names, " "))
	return nil
}

func TestOnlineRestoreStopsAndStartsTheControlPlane(t *testing.T) {
	s := scene(t, profile.OpenShift43)
	dir := filepath.Join(s.Root, s.Profile.ManifestDir)
	before, _ := os.ReadDir(dir)
	h := &host{t: t, manifestDir: dir}
	var out bytes.Buffer
	o := options(s, &out)
	o.Online, o.Host = true, h
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("online restore: %v\n%s", err, out.String())
	}
	want := "wait openshift-kube-scheduler/kube-scheduler openshift-kube-controller-manager/kube-controller-manager openshift-kube-apiserver/kube-apiserver openshift-etcd/etcd-member, stop-kubelet, start-kubelet"
	if got := strings.Join(h.calls, ", "); got != want {
		t.Fatalf("host calls:\n got %s\nwant %s", got, want)
	}
	after, _ := os.ReadDir(dir)
	if len(after) != len(before) {
		t.Fatalf("%d manifests back in %s, want %d", len(after), dir, len(before))
	}
	text := out.String()
	if i, j := strings.Index(text, "..starting etcd-member.yaml"), strings.Index(text, "..starting kube-apiserver-pod.yaml"); i < 0 || j < i {
		t.Errorf("etcd must start first:\n%s", text)
	}
	// the manifest that came back is the rewritten one
	b, _ := os.ReadFile(filepath.Join(dir, "etcd-member.yaml"))
	if strings.Contains(string(b), "--discovery-srv test.example.com") || !strings.Contains(string(b), "ETCD_INITIAL_CLUSTER") {
		t.Errorf("etcd manifest not rewritten:\n%s", b)
	}
	kept := filepath.Join(s.Root, "var/lib/etcd-rescue/backup")
	if found, _ := filepath.Glob(filepath.Join(kept, "*", s.Profile.Manifest)); len(found) != 1 {
		t.Errorf("no copy of the original etcd manifest under %s", kept)
	}
	startFromManifest(t, s)
}

func TestOfflineRestoreRefusesARunningEtcd(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	db := filepath.Join(s.Root, s.Profile.DataDir, "member/snap/db")
	f, err := os.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lockExclusive(f); err != nil {
		t.Fatal(err)
	}
	before := disaster.TreeHash(t, s.Root)
	var out bytes.Buffer
	err = restore.Run(context.Background(), options(s, &out))
	if err == nil || !strings.Contains(err.Error(), "etcd is running on") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	if disaster.TreeHash(t, s.Root) != before {
		t.Fatal("refused restore changed the root")
	}
}

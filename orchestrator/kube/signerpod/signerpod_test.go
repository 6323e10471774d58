package signerpod_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/kubetest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/signerpod"
)

// TestRemove creates the runbook's openshift-config/etcd-signer pod in a
// real kube-apiserver, checks that a dry run leaves it, removes it and
// verifies it is gone; a static signer's mirror pod that stays is reported.
func TestRemove(t *testing.T) {
	s := kubetest.Start(t)
	core := s.Typed(t).Core
	api := s.Clients(t)
	ctx := kubetest.Context(t, 2*time.Minute)
	for _, ns := range []string{"openshift-config", "openshift-etcd"} {
		if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// No controller-manager runs: create the default service account
		// the ServiceAccount admission plugin wants.
		if _, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(ns, name string, labels map[string]string, node ...string) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "signer", Image: "quay.io/openshift/kube-etcd-signer-server:4.3"}}},
		}
		if len(node) > 0 {
			p.Spec.NodeName = node[0]
		}
		_, err := core.Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Nothing to remove.
	var out bytes.Buffer
	if err := signerpod.Remove(ctx, api, signerpod.Options{Out: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "not present") || !strings.Contains(out.String(), "signer: gone") {
		t.Errorf("no signer:\n%s", out.String())
	}

	pod("openshift-config", "etcd-signer", nil)
	out.Reset()
	if err := signerpod.Remove(ctx, api, signerpod.Options{DryRun: true, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "would delete") {
		t.Errorf("dry run:\n%s", out.String())
	}
	if _, err := core.Pods("openshift-config").Get(ctx, "etcd-signer", metav1.GetOptions{}); err != nil {
		t.Fatalf("dry run removed the pod: %v", err)
	}

	out.Reset()
	start := time.Now()
	if err := signerpod.Remove(ctx, api, signerpod.Options{Interval: 100 * time.Millisecond, Out: &out}); err != nil {
		t.Fatal(err)
	}
	t.Logf("removed in %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if _, err := core.Pods("openshift-config").Get(ctx, "etcd-signer", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("signer pod still there: %v", err)
	}

	// Bound to a node whose kubelet is gone, the pod stays terminating
	// until --force deletes it with a zero grace period.
	pod("openshift-config", "etcd-signer", nil, "master-0")
	err := signerpod.Remove(ctx, api, signerpod.Options{Timeout: time.Second, Interval: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "on node master-0 (terminating)") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("pod of a node without kubelet: %v", err)
	}
	out.Reset()
	if err := signerpod.Remove(ctx, api, signerpod.Options{Force: true, Interval: 100 * time.Millisecond, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "grace period 0") {
		t.Errorf("forced removal:\n%s", out.String())
	}

	// A static signer's mirror pod that does not go away is reported.
	pod("openshift-etcd", "etcd-rescue-signer-master-0", map[string]string{"app": "etcd-rescue-signer"})
	err = signerpod.Remove(ctx, api, signerpod.Options{Timeout: time.Second, Interval: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "openshift-etcd/etcd-rescue-signer-master-0") || !strings.Contains(err.Error(), signerpod.StaticManifest) {
		t.Fatalf("lingering static signer: %v", err)
	}
}

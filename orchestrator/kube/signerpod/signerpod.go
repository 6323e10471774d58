// Package signerpod removes the temporary etcd certificate signer from the
// cluster once the etcd membership is full: it deletes the signer pod the
// OpenShift 4.3 runbook creates (openshift-config/etcd-signer) and verifies
// it is gone, and it checks that the mirror pod of etcd-rescue's static-pod
// signer (label app=etcd-rescue-signer), which the signer removes itself,
// is gone too.
package signerpod

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults of Options.
const (
	DefaultNamespace = "openshift-config"
	DefaultName      = "etcd-signer"
	// StaticNamespace and StaticSelector find the mirror pods of
	// etcd-rescue's static-pod signer.
	StaticNamespace = "openshift-etcd"
	StaticSelector  = "app=etcd-rescue-signer"
	// StaticManifest is the static pod's manifest on the survivor.
	StaticManifest = "/etc/kubernetes/manifests/etcd-rescue-signer.yaml"
)

// Options say which pods to remove and how.
type Options struct {
	// Namespace and Name of the signer pod. Default openshift-config/etcd-signer.
	Namespace, Name string
	// Force deletes with a zero grace period, for a pod whose node's
	// kubelet does not confirm the deletion.
	Force bool
	// DryRun says what would be deleted and deletes nothing.
	DryRun bool
	// Timeout is how long to wait for the pods to be gone. Default 2m.
	Timeout time.Duration
	// Interval between checks. Default 2s.
	Interval time.Duration
	// Out receives what is done. Nil discards.
	Out io.Writer
}

// API reads and deletes pods (*apiclient.Clients is one).
type API interface {
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	ListPods(ctx context.Context, namespace, selector string) (*corev1.PodList, error)
	DeletePod(ctx context.Context, namespace, name string, opts metav1.DeleteOptions) error
}

// Remove deletes the signer pod if present and waits until it and any
// static signer mirror pod are gone.
func Remove(ctx context.Context, api API, o Options) error {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	ref := o.Namespace + "/" + o.Name
	p, err := api.GetPod(ctx, o.Namespace, o.Name)
	switch {
	case apierrors.IsNotFound(err):
		fmt.Fprintf(out, "signer pod %s: not present\n", ref)
		p = nil
	case err != nil:
		return fmt.Errorf("read signer pod %s: %w", ref, err)
	}
	mirrors, err := api.ListPods(ctx, StaticNamespace, StaticSelector)
	if err != nil {
		return fmt.Errorf("list static signer pods (%s in %s): %w", StaticSelector, StaticNamespace, err)
	}
	if o.DryRun {
		if p != nil {
			fmt.Fprintf(out, "signer pod %s on node %s: would delete it%s\n", ref, nodeOf(p), graceNote(o.Force))
		}
		for _, m := range mirrors.Items {
			fmt.Fprintf(out, "static signer pod %s/%s on node %s: would wait for the signer to remove %s\n", m.Namespace, m.Name, nodeOf(&m), StaticManifest)
		}
		return nil
	}
	if p != nil {
		opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}
		if o.Force {
			zero := int64(0)
			opts.GracePeriodSeconds = &zero
		}
		if err := api.DeletePod(ctx, o.Namespace, o.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete signer pod %s: %w", ref, err)
		}
		fmt.Fprintf(out, "signer pod %s on node %s: deleted%s\n", ref, nodeOf(p), graceNote(o.Force))
	}

	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for {
		var left []string
		if p != nil {
			cur, err := api.GetPod(wctx, o.Namespace, o.Name)
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				left = append(left, fmt.Sprintf("%s (%v)", ref, err))
			case cur.UID != p.UID:
				// A new pod of the same name is not the one deleted.
				return fmt.Errorf("signer pod %s was created again (uid %s) after the delete: find what recreates it (oc get pod -n %s %s -o yaml: ownerReferences)", ref, cur.UID, o.Namespace, o.Name)
			default:
				left = append(left, fmt.Sprintf("%s on node %s (terminating)", ref, nodeOf(cur)))
			}
		}
		l, err := api.ListPods(wctx, StaticNamespace, StaticSelector)
		if err != nil {
			left = append(left, fmt.Sprintf("static signer pods (%v)", err))
		} else {
			for _, m := range l.Items {
				left = append(left, fmt.Sprintf("static signer pod %s/%s on node %s", m.Namespace, m.Name, nodeOf(&m)))
			}
		}
		if len(left) == 0 {
			fmt.Fprintln(out, "signer: gone")
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("after %s still present: %s; a pod stuck terminating needs its node's kubelet (or --force), and the static signer removes %s itself at full membership (remove that file on the node if the signer has stopped)", o.Timeout, strings.Join(left, "; "), StaticManifest)
		case <-time.After(o.Interval):
		}
	}
}

func nodeOf(p *corev1.Pod) string {
	if p.Spec.NodeName == "" {
		return "<unscheduled>"
	}
	return p.Spec.NodeName
}

func graceNote(force bool) string {
	if force {
		return " (grace period 0)"
	}
	return ""
}

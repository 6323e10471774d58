// Package nodes waits until the master nodes are Ready, printing a progress
// line while it waits and an `oc get nodes`-like table at the end, and reads
// the nodes' InternalIP addresses.
package nodes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// RoleLabelPrefix prefixes the label that gives a node a role
// (node-role.kubernetes.io/master).
const RoleLabelPrefix = "node-role.kubernetes.io/"

// API lists nodes (*apiclient.Clients is one).
type API interface {
	ListNodes(ctx context.Context, selector string) (*corev1.NodeList, error)
}

// Waiter waits for nodes of one role.
type Waiter struct {
	// API lists the nodes.
	API API
	// Role selects nodes by the node-role.kubernetes.io/<Role> label.
	// Default "master".
	Role string
	// Count is how many nodes of the role must be Ready. Default: len(Names), at least 1.
	Count int
	// Names, when set, must all be among the Ready nodes.
	Names []string
	// Interval between polls. Default 5s.
	Interval time.Duration
	// Out receives progress lines. Nil discards.
	Out io.Writer
}

// Status is one node's readiness.
type Status struct {
	Name   string
	Ready  bool
	Status string // Ready, NotReady or Unknown
	Reason string // the Ready condition's reason and message when not Ready
}

// NodeStatus reads a node's Ready condition.
func NodeStatus(n *corev1.Node) Status {
	s := Status{Name: n.Name, Status: "Unknown", Reason: "no Ready condition (the kubelet has not reported yet)"}
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		switch c.Status {
		case corev1.ConditionTrue:
			return Status{Name: n.Name, Ready: true, Status: "Ready"}
		case corev1.ConditionFalse:
			s.Status = "NotReady"
		}
		s.Reason = strings.TrimSpace(c.Reason + ": " + c.Message)
		s.Reason = strings.Trim(s.Reason, ": ")
	}
	return s
}

// InternalIP returns the node's first InternalIP address, or "".
func InternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

func (w *Waiter) defaults() {
	if w.Role == "" {
		w.Role = "master"
	}
	if w.Count == 0 {
		w.Count = max(len(w.Names), 1)
	}
	if w.Interval == 0 {
		w.Interval = 5 * time.Second
	}
	if w.Out == nil {
		w.Out = io.Discard
	}
}

// List returns the nodes of the role, sorted by name.
func (w *Waiter) List(ctx context.Context) ([]corev1.Node, error) {
	w.defaults()
	l, err := w.API.ListNodes(ctx, RoleLabelPrefix+w.Role)
	if err != nil {
		return nil, fmt.Errorf("list %s nodes: %w", w.Role, err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items, nil
}

// progress is the state of one poll.
type progress struct {
	ready   int
	waiting []string // "name (NotReady: reason)" or "name (not registered)"
}

func (w *Waiter) check(nodes []corev1.Node) progress {
	var p progress
	seen := map[string]bool{}
	for i := range nodes {
		s := NodeStatus(&nodes[i])
		seen[s.Name] = true
		if s.Ready {
			p.ready++
			continue
		}
		p.waiting = append(p.waiting, fmt.Sprintf("%s (%s: %s)", s.Name, s.Status, s.Reason))
	}
	for _, n := range w.Names {
		if !seen[n] {
			p.waiting = append(p.waiting, n+" (not registered)")
		}
	}
	return p
}

func (w *Waiter) done(p progress, nodes []corev1.Node) bool {
	if p.ready < w.Count {
		return false
	}
	for _, n := range w.Names {
		i := slices.IndexFunc(nodes, func(x corev1.Node) bool { return x.Name == n })
		if i < 0 || !NodeStatus(&nodes[i]).Ready {
			return false
		}
	}
	return true
}

// Ready reports whether nodes (a List result) satisfy the waiter: Count
// of them Ready, and every one of Names.
func (w *Waiter) Ready(nodes []corev1.Node) bool { return w.done(w.check(nodes), nodes) }

// Wait polls until Count nodes of the role (and every one of Names) are
// Ready, printing a progress line whenever the state changes and every
// minute otherwise. It returns the role's nodes at the last poll.
func (w *Waiter) Wait(ctx context.Context) ([]corev1.Node, error) {
	w.defaults()
	start := time.Now()
	var last string
	var lastPrint time.Time
	var nodes []corev1.Node
	var lastErr error
	for {
		l, err := w.List(ctx)
		if err == nil {
			nodes, lastErr = l, nil
			p := w.check(nodes)
			line := fmt.Sprintf("%d/%d %s nodes Ready", p.ready, w.Count, w.Role)
			if len(p.waiting) > 0 {
				line += "; waiting for " + strings.Join(p.waiting, ", ")
			}
			if line != last || time.Since(lastPrint) >= time.Minute {
				fmt.Fprintf(w.Out, "wait-nodes: %s (%s)\n", line, time.Since(start).Round(time.Second))
				last, lastPrint = line, time.Now()
			}
			if w.done(p, nodes) {
				return nodes, nil
			}
		} else if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			lastErr = err
			fmt.Fprintf(w.Out, "wait-nodes: %v (retrying)\n", err)
		}
		select {
		case <-ctx.Done():
			msg := last
			if lastErr != nil {
				msg = lastErr.Error()
			}
			return nodes, fmt.Errorf("after %s: %s; check the kubelet on the masters that are not Ready (journalctl -u kubelet) and their pending CSRs (etcd-rescue approve-csrs)", time.Since(start).Round(time.Second), msg)
		case <-time.After(w.Interval):
		}
	}
}

// Roles returns the node's roles from its node-role.kubernetes.io labels.
func Roles(n *corev1.Node) string {
	var r []string
	for k := range n.Labels {
		if role, ok := strings.CutPrefix(k, RoleLabelPrefix); ok && role != "" {
			r = append(r, role)
		}
	}
	if len(r) == 0 {
		return "<none>"
	}
	sort.Strings(r)
	return strings.Join(r, ",")
}

// WriteTable prints nodes like `oc get nodes -o wide` without the OS
// columns: NAME STATUS ROLES AGE VERSION INTERNAL-IP.
func WriteTable(out io.Writer, nodes []corev1.Node, now time.Time) {
	tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tROLES\tAGE\tVERSION\tINTERNAL-IP")
	for i := range nodes {
		n := &nodes[i]
		status := NodeStatus(n).Status
		if n.Spec.Unschedulable {
			status += ",SchedulingDisabled"
		}
		age := "<unknown>"
		if !n.CreationTimestamp.IsZero() {
			age = duration.HumanDuration(now.Sub(n.CreationTimestamp.Time))
		}
		ip := InternalIP(n)
		if ip == "" {
			ip = "<none>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, status, Roles(n), age, orNone(n.Status.NodeInfo.KubeletVersion), ip)
	}
	tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

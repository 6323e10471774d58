package csr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ApprovalReason is the reason recorded in the Approved condition.
const ApprovalReason = "EtcdRescueApproved"

// API is the part of the Kubernetes API the Approver uses
// (*apiclient.Clients is one).
type API interface {
	ListCSRs(ctx context.Context) (*certv1.CertificateSigningRequestList, error)
	UpdateCSRApproval(ctx context.Context, r *certv1.CertificateSigningRequest) (*certv1.CertificateSigningRequest, error)
	// GetNode reads a planned node's addresses for the serving CSR rule.
	GetNode(ctx context.Context, name string) (*corev1.Node, error)
}

// Approver lists pending CSRs and approves those that pass the rules.
type Approver struct {
	// API lists and approves CSRs and reads nodes.
	API API
	// Planned are the node names of the planned masters.
	Planned []string
	// DryRun decides and prints, and approves nothing.
	DryRun bool
	// Out receives the decision table. Nil discards.
	Out io.Writer
	// Since is how recent an approval (by this run, an earlier run or an
	// operator) must be to count toward a node's goal of an approved
	// client and serving CSR. Zero means one hour before the first pass:
	// approved CSRs are deleted an hour after approval, so this covers an
	// earlier run without counting the lost master's old CSRs.
	Since time.Time

	// approved holds, per node and kind, whether an approved CSR was seen.
	approved map[string]map[string]bool
	// shown holds the last printed verdict per CSR, so --watch prints changes only.
	shown map[string]string
}

// Result is one pass over the CSRs.
type Result struct {
	// Decisions are the verdicts on every pending CSR, sorted by name.
	Decisions []Decision `json:"decisions"`
	// Approved are the names of the CSRs approved in this pass.
	Approved []string `json:"approved"`
}

func (a *Approver) out() io.Writer {
	if a.Out == nil {
		return io.Discard
	}
	return a.Out
}

// rules reads the planned nodes' addresses.
func (a *Approver) rules(ctx context.Context) (Rules, error) {
	r := Rules{Nodes: a.Planned, Addresses: map[string][]string{}}
	for _, name := range a.Planned {
		n, err := a.API.GetNode(ctx, name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return r, fmt.Errorf("read node %s: %w", name, err)
		}
		r.Addresses[name] = NodeAddresses(n)
	}
	return r, nil
}

// Once decides on every pending CSR, approves those that pass (unless
// DryRun), and prints the verdicts.
func (a *Approver) Once(ctx context.Context) (*Result, error) {
	if len(a.Planned) == 0 {
		return nil, errors.New("no planned nodes: give the new masters' node names (--nodes) so only their CSRs are approved")
	}
	if a.Since.IsZero() {
		a.Since = time.Now().Add(-time.Hour).Truncate(time.Second)
	}
	rules, err := a.rules(ctx)
	if err != nil {
		return nil, err
	}
	list, err := a.API.ListCSRs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list CSRs: %w", err)
	}
	res := &Result{}
	for i := range list.Items {
		r := &list.Items[i]
		d := Decide(r, rules)
		if d.State != "pending" {
			a.noteApproved(r, d, rules)
			continue
		}
		if d.Approve && !a.DryRun {
			if err := approve(ctx, a.API, r, d.Reason); err != nil {
				return res, err
			}
			res.Approved = append(res.Approved, r.Name)
			d.State = "approved"
			a.markApproved(d)
		}
		res.Decisions = append(res.Decisions, d)
	}
	sort.Slice(res.Decisions, func(i, j int) bool { return res.Decisions[i].Name < res.Decisions[j].Name })
	a.print(res.Decisions)
	return res, nil
}

// approve adds the Approved condition through the approval subresource.
func approve(ctx context.Context, c API, r *certv1.CertificateSigningRequest, reason string) error {
	r = r.DeepCopy()
	r.Status.Conditions = append(r.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type:           certv1.CertificateApproved,
		Status:         corev1.ConditionTrue,
		Reason:         ApprovalReason,
		Message:        "etcd-rescue: " + reason,
		LastUpdateTime: metav1.Now(),
	})
	if _, err := c.UpdateCSRApproval(ctx, r); err != nil {
		return fmt.Errorf("approve CSR %s: %w", r.Name, err)
	}
	return nil
}

// noteApproved counts an approved CSR of a planned node that passes the
// rules and was approved after Since (by an operator with oc, or by an
// earlier run): a new master's CSRs can be approved by anyone. Older
// approvals are left out, as they may belong to the lost master that had
// the same name.
func (a *Approver) noteApproved(r *certv1.CertificateSigningRequest, d Decision, rules Rules) {
	if d.State != "approved" {
		return
	}
	p := r.DeepCopy()
	p.Status.Conditions = nil
	if !Decide(p, rules).Approve {
		return
	}
	for _, c := range r.Status.Conditions {
		// The API server fills lastTransitionTime; clients set lastUpdateTime.
		at := c.LastUpdateTime.Time
		if c.LastTransitionTime.After(at) {
			at = c.LastTransitionTime.Time
		}
		if c.Type == certv1.CertificateApproved && !at.Before(a.Since) {
			a.markApproved(d)
		}
	}
}

func (a *Approver) markApproved(d Decision) {
	if a.approved == nil {
		a.approved = map[string]map[string]bool{}
	}
	if a.approved[d.Node] == nil {
		a.approved[d.Node] = map[string]bool{}
	}
	a.approved[d.Node][d.Kind] = true
}

// Missing lists, per planned node, the CSR kinds not approved yet.
func (a *Approver) Missing() []string {
	var m []string
	for _, n := range a.Planned {
		for _, k := range []string{KindClient, KindServing} {
			if !a.approved[n][k] {
				m = append(m, n+" "+k)
			}
		}
	}
	return m
}

// Watch repeats Once every interval until every planned node has an
// approved client and serving CSR, or ctx ends.
func (a *Approver) Watch(ctx context.Context, interval time.Duration) error {
	if a.DryRun {
		return errors.New("--watch approves as CSRs arrive; with --dry-run run one pass without --watch")
	}
	start := time.Now()
	for {
		if _, err := a.Once(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(a.out(), "approve-csrs: %v (retrying)\n", err)
		}
		missing := a.Missing()
		if len(missing) == 0 {
			fmt.Fprintf(a.out(), "approve-csrs: every planned node has its client and serving CSR approved (%s)\n", time.Since(start).Round(time.Second))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s still waiting for CSRs: %s; check the new masters' kubelets (journalctl -u kubelet) and `oc get csr`", time.Since(start).Round(time.Second), strings.Join(missing, ", "))
		case <-time.After(interval):
		}
	}
}

// print writes the verdicts that changed since the last pass.
func (a *Approver) print(ds []Decision) {
	if a.shown == nil {
		a.shown = map[string]string{}
	}
	tw := tabwriter.NewWriter(a.out(), 0, 4, 2, ' ', 0)
	header := false
	for _, d := range ds {
		action := "refuse"
		switch {
		case d.Approve && a.DryRun:
			action = "would approve"
		case d.Approve:
			action = "approved"
		}
		key := action + "|" + d.Reason
		if a.shown[d.Name] == key {
			continue
		}
		a.shown[d.Name] = key
		if !header {
			fmt.Fprintln(tw, "NAME\tSIGNER\tREQUESTOR\tNODE\tACTION\tREASON")
			header = true
		}
		node := d.Node
		if node == "" {
			node = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, shortSigner(d.Signer), d.Requestor, node, action, d.Reason)
	}
	tw.Flush()
}

func shortSigner(s string) string {
	switch s {
	case certv1.KubeAPIServerClientKubeletSignerName:
		return "kubelet-client"
	case certv1.KubeletServingSignerName:
		return "kubelet-serving"
	}
	return s
}

package apiclient_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/kubetest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/apiclient"
)

// TestWaitReady polls a real kube-apiserver: the admin kubeconfig is ready
// and accepted; an unknown bearer token is reported as refused credentials.
func TestWaitReady(t *testing.T) {
	s := kubetest.Start(t)
	cl, err := apiclient.Connect(s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	if err := cl.WaitReady(kubetest.Context(t, time.Minute), apiclient.ReadyOptions{Out: &out}); err != nil {
		t.Fatal(err)
	}
	t.Logf("ready in %s: %s", time.Since(start), out.String())
	if !strings.Contains(out.String(), "ready, credentials accepted") {
		t.Errorf("progress: %s", out.String())
	}

	// An expired OAuth token: /readyz may answer, /api refuses it.
	cfg := *s.Admin
	cfg.TLSClientConfig.CertFile, cfg.TLSClientConfig.KeyFile = "", ""
	cfg.BearerToken = "sha256~expired-oauth-token"
	bad, err := apiclient.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = bad.WaitReady(ctx, apiclient.ReadyOptions{Interval: 200 * time.Millisecond, Out: &out})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("refused token: %v\n%s", err, out.String())
	}
	t.Logf("with a refused token: %v", err)
}

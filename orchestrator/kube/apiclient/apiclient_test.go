package apiclient

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpproxy"
	"k8s.io/client-go/rest"
)

func TestProxyWarning(t *testing.T) {
	env := &httpproxy.Config{HTTPSProxy: "http://user:pw@proxy.corp:3128", HTTPProxy: "http://proxy.corp:3128", NoProxy: ".internal,10.0.0.0/8"}
	tests := []struct {
		host string
		warn string
	}{
		{"https://api.ocp.example.com:6443", "through the proxy http://user@proxy.corp:3128 (HTTPS_PROXY)"},
		{"https://api.ocp.internal:6443", ""},
		{"https://10.0.0.5:6443", ""},
		{"https://127.0.0.1:6443", ""},
		{"https://localhost:6443", ""},
		{"api.ocp.example.com:6443", "add api.ocp.example.com to NO_PROXY"},
	}
	for _, tc := range tests {
		w, err := proxyWarning(&rest.Config{Host: tc.host}, env)
		if err != nil {
			t.Fatal(err)
		}
		if (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
			t.Errorf("%s: warning %q, want %q", tc.host, w, tc.warn)
		}
		if strings.Contains(w, "pw@") {
			t.Errorf("%s: warning shows the proxy password: %q", tc.host, w)
		}
	}
	// The environment is read at each call, not once per process.
	t.Setenv("HTTPS_PROXY", "http://proxy.corp:3128")
	t.Setenv("NO_PROXY", "")
	if w, _ := ProxyWarning(&rest.Config{Host: "https://api.ocp.example.com:6443"}); w == "" {
		t.Error("no warning with HTTPS_PROXY set")
	}
	t.Setenv("NO_PROXY", ".example.com")
	if w, _ := ProxyWarning(&rest.Config{Host: "https://api.ocp.example.com:6443"}); w != "" {
		t.Errorf("warning with the host in NO_PROXY: %q", w)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing kubeconfig: %v", err)
	}
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	if _, err := LoadConfig(""); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("no kubeconfig: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("not: [yaml"), 0o600)
	if _, err := LoadConfig(bad); err == nil {
		t.Error("bad kubeconfig loaded")
	}
}

func TestWaitReadyUnreachable(t *testing.T) {
	c, err := New(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	err = c.WaitReady(ctx, ReadyOptions{Interval: 100 * time.Millisecond, Out: &out})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("unreachable API server: %v\n%s", err, out.String())
	}
}

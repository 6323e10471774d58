package apiclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ReadyOptions tune WaitReady.
type ReadyOptions struct {
	// Interval between polls. Default 5s.
	Interval time.Duration
	// Out receives one progress line per change of state. Nil discards.
	Out io.Writer
}

// WaitReady polls the API server's /readyz until it answers 200, then checks
// that the kubeconfig's credentials are accepted (an authenticated GET /api
// that is not 401): after a restore, OAuth tokens can be refused for minutes
// until the OAuth server pods restart. It returns when both hold or ctx
// ends, with the last state in the error.
func (c *Clients) WaitReady(ctx context.Context, o ReadyOptions) error {
	if o.Interval == 0 {
		o.Interval = 5 * time.Second
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	start := time.Now()
	last := ""
	for {
		state, done := c.readyState(ctx)
		if state != last {
			fmt.Fprintf(out, "readyz: %s (%s)\n", state, time.Since(start).Round(time.Second))
			last = state
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API server %s not ready after %s: %s", c.Config.Host, time.Since(start).Round(time.Second), last)
		case <-time.After(o.Interval):
		}
	}
}

// Ready checks once whether the API server is ready and accepts the
// credentials, and says how it stands in one line.
func (c *Clients) Ready(ctx context.Context) (string, bool) { return c.readyState(ctx) }

// readyState returns a one-line state and whether the API server is ready
// and accepts the credentials.
func (c *Clients) readyState(ctx context.Context) (string, bool) {
	rc := c.core
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var code int
	body, err := rc.Get().AbsPath("/readyz").Param("verbose", "true").Do(pctx).StatusCode(&code).Raw()
	switch {
	case code == http.StatusUnauthorized:
		return "credentials refused (401) on /readyz: the API server or its OAuth token authenticator is not back yet", false
	case code == 0 && err != nil:
		return "unreachable: " + err.Error(), false
	case code != http.StatusOK:
		return fmt.Sprintf("not ready (%d): %s", code, failedChecks(body, err)), false
	}
	code = 0
	_, err = rc.Get().AbsPath("/api").Do(pctx).StatusCode(&code).Raw()
	switch {
	case code == http.StatusUnauthorized:
		return "ready, but the credentials are refused (401): OAuth tokens may work again only after the OAuth server pods restart", false
	case code == 0 && err != nil:
		return "ready, but GET /api failed: " + err.Error(), false
	case code != http.StatusOK:
		return fmt.Sprintf("ready, but GET /api answered %d: %v", code, err), false
	}
	return "ready, credentials accepted", true
}

// failedChecks picks the failed checks ("[-]etcd failed: ...") from a
// verbose /readyz answer.
func failedChecks(body []byte, err error) string {
	var failed []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "[-]") {
			name, _, _ := strings.Cut(strings.TrimPrefix(l, "[-]"), " ")
			failed = append(failed, name)
		}
	}
	if len(failed) > 0 {
		return "failed checks " + strings.Join(failed, ", ")
	}
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(body))
}

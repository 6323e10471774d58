package apiclient

import (
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpproxy"
	"k8s.io/client-go/rest"
)

// ProxyWarning says whether requests to the API server of cfg would go
// through a proxy, and what to do about it; it returns "" when they go
// direct. A proxy-url in the kubeconfig wins; otherwise HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY (or their lower-case forms) are read from the
// environment now, not from a value cached at start-up.
func ProxyWarning(cfg *rest.Config) (string, error) {
	return proxyWarning(cfg, httpproxy.FromEnvironment())
}

func proxyWarning(cfg *rest.Config, env *httpproxy.Config) (string, error) {
	u, err := apiURL(cfg.Host)
	if err != nil {
		return "", err
	}
	if cfg.Proxy != nil {
		p, err := cfg.Proxy(nil)
		if err == nil && p != nil {
			return fmt.Sprintf("the API server %s is reached through the kubeconfig's proxy-url %s: during a recovery that proxy may be down or unable to reach the masters; remove proxy-url from the kubeconfig if the masters are directly reachable", u.Host, redact(p)), nil
		}
	}
	p, err := env.ProxyFunc()(u)
	if err != nil {
		return "", fmt.Errorf("proxy settings: %w", err)
	}
	if p == nil {
		return "", nil
	}
	from := "HTTPS_PROXY"
	if u.Scheme == "http" {
		from = "HTTP_PROXY"
	}
	return fmt.Sprintf("the API server %s would be reached through the proxy %s (%s): during a recovery that proxy may be down or unable to reach the masters; add %s to NO_PROXY (now %q)",
		u.Host, redact(p), from, u.Hostname(), env.NoProxy), nil
}

func apiURL(host string) (*url.URL, error) {
	if host == "" {
		return nil, fmt.Errorf("the kubeconfig names no API server")
	}
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("API server address %q: %w", host, err)
	}
	return u, nil
}

// redact drops a proxy URL's password.
func redact(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = url.User(u.User.Username())
	return c.String()
}

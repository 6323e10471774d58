package signer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Trust says how a client recognizes the etcd CA: a CA certificate it
// already has, or the pin of one ("sha256:<hex of its SubjectPublicKeyInfo>"),
// which a master's Ignition config can carry in place of the certificate.
type Trust struct {
	CA     *x509.Certificate
	CAHash string
}

// Client talks to a signer.
type Client struct {
	// URL is the signer's base URL (https://IP:9943).
	URL  string
	http *http.Client
}

// RefusedError is a refusal by the signer, with its reason.
type RefusedError struct {
	Status int
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("signer refused (HTTP %d): %s", e.Status, e.Reason)
}

// NewClient returns a client of the signer at url that trusts the etcd CA as
// told, and presents cert (when non-nil) as its client certificate.
func NewClient(url string, trust Trust, cert *tls.Certificate) (*Client, error) {
	if !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("signer URL %q must start with https:// (the signer serves TLS only)", url)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case trust.CA != nil:
		pool := x509.NewCertPool()
		pool.AddCert(trust.CA)
		tc.RootCAs = pool
	case trust.CAHash != "":
		pin := strings.ToLower(trust.CAHash)
		tc.InsecureSkipVerify = true // replaced by the pin check below
		tc.VerifyConnection = func(cs tls.ConnectionState) error { return verifyPinned(cs, pin) }
	default:
		return nil, errors.New("no way to verify the signer: give the etcd CA certificate (--cacert) or its pin (--ca-hash sha256:…)")
	}
	if cert != nil {
		c := *cert
		tc.Certificates = []tls.Certificate{c}
	}
	return &Client{
		URL:  strings.TrimSuffix(url, "/"),
		http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}},
	}, nil
}

// verifyPinned accepts the server when a certificate of its chain has the
// pinned key and verifies the leaf for the host dialed.
func verifyPinned(cs tls.ConnectionState, pin string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("signer sent no certificate")
	}
	for _, c := range cs.PeerCertificates {
		if SPKIHash(c) != pin {
			continue
		}
		pool := x509.NewCertPool()
		pool.AddCert(c)
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: cs.ServerName})
		if err != nil {
			return fmt.Errorf("signer certificate does not verify against the pinned CA: %w", err)
		}
		return nil
	}
	return fmt.Errorf("signer's CA does not match the pin %s", pin)
}

// Healthz checks that the signer answers.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/healthz", nil, nil)
}

// Certificates sends CSRs with the bootstrap token and returns the certificates.
func (c *Client) Certificates(ctx context.Context, req CertRequest) (*CertResponse, error) {
	var resp CertResponse
	if err := c.do(ctx, http.MethodPost, "/v1/certificates", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// AddMember asks the signer to add the caller as an etcd learner. The client
// must have been made with the member's peer certificate.
func (c *Client) AddMember(ctx context.Context, req MemberRequest) (*MemberResponse, error) {
	var resp MemberResponse
	if err := c.do(ctx, http.MethodPost, "/v1/members", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("signer %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("signer %s: read answer: %w", c.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(b))
		}
		return &RefusedError{Status: resp.StatusCode, Reason: eb.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("signer %s: answer is not JSON: %w", c.URL, err)
	}
	return nil
}

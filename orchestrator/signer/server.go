// Package signer is the temporary etcd certificate signer that runs on the
// restored master while new masters join: the safer successor of OpenShift
// 4.3's kube-etcd-signer-server. It serves HTTPS only (TLS 1.2 or newer),
// issues a new master's peer, server and metric certificates from the etcd CA
// after checking its one-time bootstrap token and the plan, adds the master
// as an etcd learner with its own credentials (so new masters need none),
// promotes learners once they caught up, and stops by itself when the plan's
// full membership is reached or its time to live ends.
//
// The CA key never leaves the process; the token store keeps only hashes.
package signer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// DefaultListen is the signer's address, the port OpenShift's signer used.
const DefaultListen = ":9943"

// Config configures a signer.
type Config struct {
	// Plan lists the members that may get certificates. Required.
	Plan *plan.Plan
	// CA signs the certificates. Required.
	CA *pki.CA
	// Tokens holds the bootstrap token hashes. Required.
	Tokens *TokenStore
	// Profile adds the layout's extra SANs (OpenShift service names); may be nil.
	Profile *profile.Profile
	// Shapes gives per kind the key usages and lifetime to copy; missing
	// kinds get DefaultShape.
	Shapes map[string]Shape
	// ServingHosts are the names and IPs of the signer's serving
	// certificate. Default: the host of Plan.Signer.Address, and loopback.
	ServingHosts []string
	// Etcd is a client of the cluster with the right to add and promote
	// members. Nil disables member add, promotion and the stop at full
	// membership.
	Etcd *clientv3.Client
	// TTL is how long the signer runs at most. Default Plan.Signer.TTL, else 2h.
	TTL time.Duration
	// Interval is how often learners are checked for promotion and the
	// membership for completion. Default 2s.
	Interval time.Duration
	// Log receives one line per issued certificate, refusal, member change
	// and the stop reason. Default: discarded.
	Log *log.Logger
	// Now is the clock (token expiry). Default time.Now.
	Now func() time.Time
}

// StopReason says why Run returned.
type StopReason string

// Stop reasons.
const (
	StopFullMembership StopReason = "full membership reached"
	StopTTL            StopReason = "time to live ended"
	StopCanceled       StopReason = "canceled"
)

// Server is a running signer.
type Server struct {
	cfg     Config
	tlsCert tls.Certificate
	pool    *x509.CertPool
	mu      sync.Mutex // serializes issuing and member changes
	stop    chan StopReason
	// failures counts refused tokens per client address.
	failures map[string]int
}

// maxTokenFailures is how many refused tokens a client address gets before
// the signer stops answering it.
const maxTokenFailures = 10

// New checks the configuration and prepares the serving certificate.
func New(cfg Config) (*Server, error) {
	if cfg.Plan == nil || cfg.CA == nil || cfg.Tokens == nil {
		return nil, errors.New("signer needs a plan, a CA and a token store")
	}
	if cfg.TTL == 0 {
		cfg.TTL = cfg.Plan.Signer.TTL.Duration
	}
	if cfg.TTL == 0 {
		cfg.TTL = 2 * time.Hour
	}
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = log.New(io.Discard, "", 0)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Shapes == nil {
		cfg.Shapes = map[string]Shape{}
	}
	if err := cfg.Tokens.checkIssuable(len(cfg.Plan.Members)-1, cfg.Now()); err != nil {
		return nil, err
	}
	hosts := cfg.ServingHosts
	if len(hosts) == 0 {
		if h := urlHost(cfg.Plan.Signer.Address); h != "" {
			hosts = append(hosts, h)
		}
		hosts = append(hosts, "localhost", "127.0.0.1")
	}
	r := pki.Request{CommonName: "etcd-rescue-signer", Usage: pki.ServerAndClient, Validity: cfg.TTL + 24*time.Hour}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			r.IPs = append(r.IPs, ip)
		} else {
			r.DNSNames = append(r.DNSNames, h)
		}
	}
	certPEM, keyPEM, err := cfg.CA.Issue(r)
	if err != nil {
		return nil, fmt.Errorf("issue the signer's serving certificate: %w", err)
	}
	// The chain carries the CA, so a master that only knows the CA's pin
	// (--ca-hash) can verify the signer.
	tc, err := tls.X509KeyPair(append(certPEM, cfg.CA.CertPEM...), keyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cfg.CA.Cert)
	return &Server{cfg: cfg, tlsCert: tc, pool: pool, stop: make(chan StopReason, 1), failures: map[string]int{}}, nil
}

// TLSConfig is the signer's server TLS configuration: TLS 1.2 or newer,
// client certificates optional (the member endpoint requires one).
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{s.tlsCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.pool,
	}
}

// Handler returns the HTTP API:
//
//	GET  /v1/healthz       ok
//	POST /v1/certificates  token + CSRs -> certificates (one-time token)
//	POST /v1/members       member add as learner (client certificate of the member)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	})
	mux.HandleFunc("POST /v1/certificates", s.handleCertificates)
	mux.HandleFunc("POST /v1/members", s.handleMembers)
	return mux
}

// ListenAndServe listens on addr (default :9943) and runs until the stop.
func (s *Server) ListenAndServe(ctx context.Context, addr string) (StopReason, error) {
	if addr == "" {
		addr = DefaultListen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("signer listen %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTPS on ln until the plan's full membership is reached (when
// an etcd client is configured), the TTL ends, or ctx is canceled.
func (s *Server) Serve(ctx context.Context, ln net.Listener) (StopReason, error) {
	hs := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second, // a member add may wait for etcd
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0), // handshake noise from refused clients
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.watch(ctx)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(tls.NewListener(ln, hs.TLSConfig)) }()
	s.cfg.Log.Printf("signer: serving https://%s (TLS >= 1.2), ttl %s, members %s", ln.Addr(), s.cfg.TTL, strings.Join(s.cfg.Plan.Names(), ", "))

	var reason StopReason
	select {
	case reason = <-s.stop:
	case <-ctx.Done():
		reason = StopCanceled
	case <-time.After(s.cfg.TTL):
		reason = StopTTL
	case err := <-served:
		return "", fmt.Errorf("signer: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	s.cfg.Log.Printf("signer: stopped: %s", reason)
	return reason, nil
}

// watch promotes caught-up learners and stops the signer at full membership.
func (s *Server) watch(ctx context.Context) {
	if s.cfg.Etcd == nil {
		return
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if s.tick(ctx) {
			select {
			case s.stop <- StopFullMembership:
			default:
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick runs one promotion round; it reports whether membership is full.
func (s *Server) tick(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	promoted, _, err := members.PromoteReady(ctx, s.cfg.Etcd)
	for _, m := range promoted {
		s.cfg.Log.Printf("signer: promoted learner %s to a voting member", m)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Log.Printf("signer: promotion round: %v", err)
		}
		return false
	}
	list, err := members.List(ctx, s.cfg.Etcd)
	if err != nil {
		return false
	}
	if missing := members.Missing(s.cfg.Plan, list); len(missing) == 0 {
		s.cfg.Log.Printf("signer: full membership: %d voting members started", len(list))
		return true
	}
	return false
}

// CertRequest is the body of POST /v1/certificates.
type CertRequest struct {
	// Name is the member name in the plan.
	Name string `json:"name"`
	// Token is the member's one-time bootstrap token.
	Token string `json:"token"`
	// CSRs maps a kind (peer, server, metric) to a PEM certificate request.
	CSRs map[string]string `json:"csrs"`
}

// CertResponse is the answer to a CertRequest.
type CertResponse struct {
	// CA is the etcd CA certificate (PEM).
	CA string `json:"ca"`
	// Certs maps each requested kind to its PEM certificate.
	Certs map[string]string `json:"certs"`
}

// MemberRequest is the body of POST /v1/members. The caller authenticates
// with the peer certificate it got from the signer.
type MemberRequest struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
	// ReplaceStale removes an old member holding the name or peer URL.
	ReplaceStale bool `json:"replaceStale,omitempty"`
}

// MemberResponse is the answer to a MemberRequest.
type MemberResponse struct {
	// ID is the member ID in hex.
	ID string `json:"id"`
	// InitialCluster is the --initial-cluster value the member starts with.
	InitialCluster string `json:"initialCluster"`
	// AlreadyPresent is true when the member existed already (a re-run).
	AlreadyPresent bool `json:"alreadyPresent,omitempty"`
	// Removed lists stale members removed first.
	Removed []string `json:"removed,omitempty"`
}

// errorBody is every refusal's JSON.
type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, name string, reason error) {
	s.cfg.Log.Printf("signer: refused %s %s from %s (member %q): %v", r.Method, r.URL.Path, r.RemoteAddr, name, reason)
	writeJSON(w, code, errorBody{Error: reason.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) handleCertificates(w http.ResponseWriter, r *http.Request) {
	var req CertRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 256<<10)).Decode(&req); err != nil {
		s.refuse(w, r, http.StatusBadRequest, "", fmt.Errorf("request body is not a certificate request: %v", err))
		return
	}
	if len(req.CSRs) == 0 {
		s.refuse(w, r, http.StatusBadRequest, req.Name, errors.New("no CSRs in the request"))
		return
	}
	csrs := map[string]*x509.CertificateRequest{}
	for kind, text := range req.CSRs {
		if _, known := organization[kind]; !known {
			s.refuse(w, r, http.StatusForbidden, req.Name, fmt.Errorf("certificate kind %q is not issued (peer, server, metric)", kind))
			return
		}
		csr, err := parseCSR(text)
		if err != nil {
			s.refuse(w, r, http.StatusBadRequest, req.Name, fmt.Errorf("%s CSR: %v", kind, err))
			return
		}
		csrs[kind] = csr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	client := clientHost(r)
	if s.failures[client] >= maxTokenFailures {
		s.refuse(w, r, http.StatusTooManyRequests, req.Name, fmt.Errorf("%d refused tokens from %s: this address is locked out until the signer restarts", s.failures[client], client))
		return
	}
	// The token comes first: a caller without one learns nothing, not even
	// which members the plan has.
	kh := keysHash(csrs)
	reissue, err := s.cfg.Tokens.check(req.Name, req.Token, kh, s.cfg.Now())
	if err != nil {
		s.failures[client]++
		s.refuse(w, r, http.StatusForbidden, req.Name, err)
		return
	}
	m, ok := s.cfg.Plan.Member(req.Name)
	if !ok {
		s.refuse(w, r, http.StatusForbidden, req.Name, fmt.Errorf("member %q is not in the recovery plan", req.Name))
		return
	}
	if req.Name == s.cfg.Plan.Survivor {
		s.refuse(w, r, http.StatusForbidden, req.Name, fmt.Errorf("member %q is the survivor; it keeps its certificates", req.Name))
		return
	}
	for kind, csr := range csrs {
		if err := checkCSR(csr, kind, m, s.cfg.Profile); err != nil {
			s.refuse(w, r, http.StatusForbidden, req.Name, err)
			return
		}
	}
	resp := CertResponse{CA: string(s.cfg.CA.CertPEM), Certs: map[string]string{}}
	for kind, csr := range csrs {
		sh, ok := s.cfg.Shapes[kind]
		if !ok {
			sh = DefaultShape()
		}
		certPEM, err := s.cfg.CA.Sign(template(kind, m, csr, sh), csr.PublicKey)
		if err != nil {
			s.refuse(w, r, http.StatusInternalServerError, req.Name, fmt.Errorf("sign %s certificate: %v", kind, err))
			return
		}
		resp.Certs[kind] = string(certPEM)
	}
	if err := s.cfg.Tokens.consume(req.Name, kh, s.cfg.Now()); err != nil {
		s.refuse(w, r, http.StatusInternalServerError, req.Name, err)
		return
	}
	what := "issued"
	if reissue {
		what = "issued again (same keys)"
	}
	for kind := range csrs {
		s.cfg.Log.Printf("signer: %s %s certificate %s to %s", what, kind, CommonName(kind, m), r.RemoteAddr)
	}
	writeJSON(w, http.StatusOK, resp)
}

// caller returns the plan member whose signer-issued peer certificate the
// client presented.
func (s *Server) caller(r *http.Request) (plan.Member, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return plan.Member{}, errors.New("present the peer certificate the signer issued (client certificate missing or not from the etcd CA)")
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	id, ok := strings.CutPrefix(cn, "system:etcd-peer:")
	if !ok {
		return plan.Member{}, fmt.Errorf("client certificate %q is not an etcd peer certificate", cn)
	}
	for _, m := range s.cfg.Plan.Members {
		if CertIdentity(m) == id {
			return m, nil
		}
	}
	return plan.Member{}, fmt.Errorf("client certificate %q names no member of the plan", cn)
}

func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) {
	var req MemberRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		s.refuse(w, r, http.StatusBadRequest, "", fmt.Errorf("request body is not a member request: %v", err))
		return
	}
	m, err := s.caller(r)
	if err != nil {
		s.refuse(w, r, http.StatusForbidden, req.Name, err)
		return
	}
	switch {
	case req.Name != m.Name:
		err = fmt.Errorf("the client certificate is member %s's, not %s's", m.Name, req.Name)
	case m.Name == s.cfg.Plan.Survivor:
		err = fmt.Errorf("member %s is the survivor; it is not added again", m.Name)
	case req.PeerURL != "" && req.PeerURL != m.PeerURL:
		err = fmt.Errorf("peer URL %s differs from the plan's %s for member %s", req.PeerURL, m.PeerURL, m.Name)
	}
	if err != nil {
		s.refuse(w, r, http.StatusForbidden, req.Name, err)
		return
	}
	if s.cfg.Etcd == nil {
		s.refuse(w, r, http.StatusServiceUnavailable, req.Name, errors.New("this signer has no etcd access: add the member with etcdctl member add --learner"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	res, err := members.AddLearner(ctx, s.cfg.Etcd, members.AddRequest{Name: m.Name, PeerURL: m.PeerURL, ReplaceStale: req.ReplaceStale})
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, members.ErrPending) || errors.Is(err, members.ErrStale) {
			code = http.StatusConflict
		}
		s.refuse(w, r, code, req.Name, err)
		return
	}
	resp := MemberResponse{ID: fmt.Sprintf("%x", res.ID), InitialCluster: res.InitialCluster, AlreadyPresent: res.AlreadyPresent}
	for _, st := range res.Removed {
		resp.Removed = append(resp.Removed, st.String())
		s.cfg.Log.Printf("signer: removed stale member %s", st)
	}
	if res.AlreadyPresent {
		s.cfg.Log.Printf("signer: member %s (%x) already present", m.Name, res.ID)
	} else {
		s.cfg.Log.Printf("signer: added member %s (%x) as a learner, peer %s", m.Name, res.ID, m.PeerURL)
	}
	writeJSON(w, http.StatusOK, resp)
}

func clientHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

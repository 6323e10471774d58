package signer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// StateDir is where, relative to the master's root, the signer keeps its
// token store (hashes) and, when it generated them itself, the clear tokens.
const StateDir = "var/lib/etcd-rescue/signer"

// RootOptions sets a signer up from a master's root. Empty fields take
// their defaults from the plan and the profile.
type RootOptions struct {
	// Root is the master's root. Default "/".
	Root string
	Plan *plan.Plan
	// Profile is the master layout. Default: the plan's, else detected.
	Profile *profile.Profile
	// CACert and CAKey override the profile's CA paths (absolute).
	CACert, CAKey string
	// Endpoints are the etcd client URLs. Default: the survivor's client URL.
	Endpoints []string
	// EtcdCert and EtcdKey are an etcd client certificate; by default the
	// signer issues itself a short-lived one from the CA, in memory.
	EtcdCert, EtcdKey string
	// NoEtcd runs a signer that only issues certificates.
	NoEtcd bool
	// TokenStore is the hash store. Default <root>/var/lib/etcd-rescue/signer/tokens.json.
	TokenStore string
	// TokensOut receives the clear tokens when the signer generates them.
	// Default <root>/var/lib/etcd-rescue/signer/tokens.txt (0600).
	TokensOut string
	TTL       time.Duration
	// ServingHosts override the serving certificate's names.
	ServingHosts []string
	Log          *log.Logger
}

// Setup is a prepared signer and what was generated for it.
type Setup struct {
	Server *Server
	// Tokens holds the clear tokens when they were generated now (nil when
	// an existing store was loaded).
	Tokens map[string]string
	// TokensFile is where the clear tokens were written.
	TokensFile string
	// CAHash is the CA pin new masters can verify the signer with.
	CAHash string
	// Etcd is the signer's etcd client (nil with NoEtcd); the caller closes it.
	Etcd *clientv3.Client
}

// FromRoot loads the CA from the master's root, loads or generates the
// bootstrap tokens, connects to etcd and returns a ready signer.
func FromRoot(o RootOptions) (*Setup, error) {
	if o.Plan == nil {
		return nil, errors.New("the signer needs the recovery plan (--plan)")
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Profile == nil {
		var err error
		if o.Plan.Profile != "" {
			o.Profile, err = profile.Get(o.Plan.Profile)
		} else {
			o.Profile, err = profile.Detect(o.Root)
		}
		if err != nil {
			return nil, err
		}
	}
	if o.CACert == "" {
		o.CACert = profile.Abs(o.Root, o.Profile.CACert)
	}
	if o.CAKey == "" {
		o.CAKey = profile.Abs(o.Root, o.Profile.CAKey)
	}
	ca, err := pki.LoadCA(o.CACert, o.CAKey)
	if err != nil {
		return nil, fmt.Errorf("%w (the signer runs on the restored master, which holds the etcd CA key; --ca-cert/--ca-key override the paths)", err)
	}
	if o.TTL == 0 {
		o.TTL = o.Plan.Signer.TTL.Duration
	}
	if o.TTL == 0 {
		o.TTL = 2 * time.Hour
	}
	st := &Setup{CAHash: SPKIHash(ca.Cert)}
	tokens, err := loadOrCreateTokens(o, st)
	if err != nil {
		return nil, err
	}
	var cli *clientv3.Client
	if !o.NoEtcd {
		if cli, err = etcdClient(o, ca); err != nil {
			return nil, err
		}
	}
	survivor := o.Plan.SurvivorMember()
	srv, err := New(Config{
		Plan:         o.Plan,
		CA:           ca,
		Tokens:       tokens,
		Profile:      o.Profile,
		Shapes:       ShapesFromRoot(o.Root, o.Profile, survivor),
		ServingHosts: o.ServingHosts,
		Etcd:         cli,
		TTL:          o.TTL,
		Log:          o.Log,
	})
	if err != nil {
		if cli != nil {
			cli.Close()
		}
		return nil, err
	}
	st.Server, st.Etcd = srv, cli
	return st, nil
}

func loadOrCreateTokens(o RootOptions, st *Setup) (*TokenStore, error) {
	store := o.TokenStore
	if store == "" {
		store = filepath.Join(o.Root, StateDir, "tokens.json")
	}
	ts, err := LoadTokens(store)
	if err == nil {
		return ts, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var names []string
	for _, m := range o.Plan.Members {
		if m.Name != o.Plan.Survivor {
			names = append(names, m.Name)
		}
	}
	plain, ts, err := NewTokens(names, time.Now().Add(o.TTL))
	if err != nil {
		return nil, err
	}
	out := o.TokensOut
	if out == "" {
		out = filepath.Join(o.Root, StateDir, "tokens.txt")
	}
	if err := WriteTokenFile(out, plain); err != nil {
		return nil, fmt.Errorf("write tokens: %w", err)
	}
	if err := ts.Save(store); err != nil {
		return nil, fmt.Errorf("write token store: %w", err)
	}
	st.Tokens, st.TokensFile = plain, out
	return ts, nil
}

// etcdClient connects with the given client certificate, or with one the
// signer issues itself from the CA for 24 hours and keeps in memory.
func etcdClient(o RootOptions, ca *pki.CA) (*clientv3.Client, error) {
	eps := o.Endpoints
	if len(eps) == 0 {
		if u := o.Plan.SurvivorMember().ClientURL; u != "" {
			eps = []string{u}
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("no etcd endpoint: set the survivor's clientURL in the plan or pass --endpoints")
	}
	if o.EtcdCert != "" {
		return members.Dial(members.Creds{Endpoints: eps, CACert: o.CACert, Cert: o.EtcdCert, Key: o.EtcdKey})
	}
	certPEM, keyPEM, err := ca.Issue(pki.Request{CommonName: "etcd-rescue-signer", Usage: pki.ClientOnly, Validity: 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return members.Dial(members.Creds{Endpoints: eps, TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}})
}

// GenerateTokens writes a fresh token store (hashes, for the signer) and
// token file (clear, for the operator and the Ignition generator), both
// 0600, for every plan member but the survivor, valid for ttl.
func GenerateTokens(p *plan.Plan, storePath, tokensPath string, ttl time.Duration) (map[string]string, error) {
	var names []string
	for _, m := range p.Members {
		if m.Name != p.Survivor {
			names = append(names, m.Name)
		}
	}
	plain, ts, err := NewTokens(names, time.Now().Add(ttl))
	if err != nil {
		return nil, err
	}
	if err := WriteTokenFile(tokensPath, plain); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(storePath), 0o700); err != nil {
		return nil, err
	}
	if err := ts.Save(storePath); err != nil {
		return nil, err
	}
	_ = atomicfile.SyncDir(filepath.Dir(storePath))
	return plain, nil
}

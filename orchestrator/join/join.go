// Package join makes a new master an etcd member of the restored cluster, as
// a list of idempotent steps (operation "join"): keep whatever etcd state the
// master has aside, get certificates from the temporary signer with the
// master's one-time token, have the member added as a learner, write the
// etcd configuration with the current members and state "existing", and wait
// until the member is started, voting and holds the leader's data (HashKV).
//
// Every step checks real state first, so a second run changes nothing and a
// run killed anywhere (even between the member add and the start of etcd)
// finishes when run again.
package join

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/keep"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// Options configures a join. With a plan, the member's URLs, host, IP and
// DNS name come from it and flags only have to name the member.
type Options struct {
	// Root is the new master's root. Default "/".
	Root string
	// Plan is the recovery plan; optional.
	Plan *plan.Plan
	// Profile is the master layout. Default: the plan's, else detected.
	Profile *profile.Profile
	// Name is the member name. Required.
	Name string
	// PeerURL and ClientURL default to the plan's; ClientURL else to the
	// peer URL's host on port 2379.
	PeerURL, ClientURL string
	// DNSName, IP and Host describe the member when there is no plan; they
	// name its certificates and become their SANs.
	DNSName, IP, Host string
	// Endpoints are client URLs of the running cluster. Default: the
	// survivor's client URL from the plan.
	Endpoints []string
	// Signer is the signer's URL (https://IP:9943). Default: the plan's.
	Signer string
	// Token is the master's one-time bootstrap token; only needed while the
	// master has no valid certificates.
	Token string
	// CACert is the etcd CA certificate file trusted for the signer and
	// etcd. Default: the profile's CA path under Root when it exists.
	CACert string
	// CAHash pins the CA instead ("sha256:<hex>", printed by the signer).
	CAHash string
	// ReplaceStale removes an old member holding the name or peer URL.
	ReplaceStale bool
	// DryRun runs only the checks and prints the plan.
	DryRun bool
	// NoWait stops after writing the etcd configuration.
	NoWait bool
	// WaitTimeout bounds the wait (default 20m); WaitInterval is the pace
	// of its looks (default 2s).
	WaitTimeout, WaitInterval time.Duration
	// SignerTimeout is how long an unreachable or not yet ready signer is
	// retried (default 5m); refusals are final at once.
	SignerTimeout time.Duration
	// Image is the etcd image, used only when the master has no etcd
	// manifest to adapt; ListenIP is where that new manifest has etcd
	// listen (default 0.0.0.0).
	Image, ListenIP string
	// Out receives the step lines and the marker. Default: discarded.
	Out io.Writer
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// AfterStep is called after each step that ran (tests stop runs there).
	AfterStep func(name string)
}

// Run joins the master. It prints the step lines and JOIN-OK or JOIN-FAILED.
func Run(ctx context.Context, o Options) error {
	jn, err := prepare(o)
	if err != nil {
		if o.Out != nil {
			fmt.Fprintf(o.Out, "JOIN-FAILED: %v\n", err)
		}
		return err
	}
	defer jn.close()
	r := &steps.Runner{Operation: "join", Out: jn.out, DryRun: o.DryRun, Journal: jn.j, Now: o.Now, AfterStep: o.AfterStep}
	if o.DryRun {
		r.Journal = nil
	}
	var final Progress
	list := jn.steps(&final)
	err = r.Run(ctx, list, func() string {
		id := jn.j.Notes["memberID"]
		if o.NoWait {
			return fmt.Sprintf("member %s %s configured; etcd start not awaited (--no-wait)", jn.m.Name, id)
		}
		return fmt.Sprintf("member %s %s started, voting, HashKV equal to the leader's", jn.m.Name, id)
	})
	if err == nil && !o.DryRun && !o.NoWait {
		t := jn.now().UTC()
		jn.j.Finished = &t
		if serr := jn.j.Save(); serr != nil {
			return serr
		}
	}
	return err
}

// joiner is one join run's resolved settings and state.
type joiner struct {
	o     Options
	root  string
	prof  *profile.Profile
	m     plan.Member
	j     *journal.Journal
	out   io.Writer
	kinds []string // kinds with distinct files (kubeadm's metric is its server cert)
	cli   *clientv3.Client
}

func (jn *joiner) now() time.Time {
	if jn.o.Now != nil {
		return jn.o.Now()
	}
	return time.Now()
}

func (jn *joiner) close() {
	if jn.cli != nil {
		jn.cli.Close()
	}
}

func prepare(o Options) (*joiner, error) {
	jn := &joiner{o: o, root: o.Root, out: o.Out}
	if jn.root == "" {
		jn.root = "/"
	}
	if jn.out == nil {
		jn.out = io.Discard
	}
	if o.Name == "" {
		return nil, errors.New("--name is required: the etcd member name of this master, as the plan lists it")
	}
	m := plan.Member{Name: o.Name, PeerURL: o.PeerURL, ClientURL: o.ClientURL, DNSName: o.DNSName, IP: o.IP, Host: o.Host}
	if o.Plan != nil {
		pm, ok := o.Plan.Member(o.Name)
		if !ok {
			return nil, fmt.Errorf("member %q is not in the plan (members: %s)", o.Name, strings.Join(o.Plan.Names(), ", "))
		}
		if o.Name == o.Plan.Survivor {
			return nil, fmt.Errorf("member %q is the survivor: it is restored, not joined", o.Name)
		}
		if o.PeerURL != "" && o.PeerURL != pm.PeerURL {
			return nil, fmt.Errorf("--peer-url %s differs from the plan's %s for %s: fix one of them", o.PeerURL, pm.PeerURL, o.Name)
		}
		if o.ClientURL != "" {
			pm.ClientURL = o.ClientURL
		}
		m = pm
		if len(o.Endpoints) == 0 && o.Plan.SurvivorMember().ClientURL != "" {
			jn.o.Endpoints = []string{o.Plan.SurvivorMember().ClientURL}
		}
		if o.Signer == "" {
			jn.o.Signer = o.Plan.Signer.Address
		}
	}
	if m.PeerURL == "" {
		return nil, errors.New("--peer-url is required (https://HOST:2380) when the plan does not give it")
	}
	if m.ClientURL == "" {
		m.ClientURL = defaultClientURL(m.PeerURL)
	}
	jn.m = m
	if len(jn.o.Endpoints) == 0 {
		return nil, errors.New("--endpoints is required: the client URL of the restored master (https://IP:2379)")
	}
	prof := o.Profile
	var err error
	if prof == nil {
		if o.Plan != nil && o.Plan.Profile != "" {
			prof, err = profile.Get(o.Plan.Profile)
		} else {
			prof, err = profile.Detect(jn.root)
		}
		if err != nil {
			return nil, err
		}
	}
	jn.prof = prof
	seen := map[string]bool{}
	for _, k := range signer.Kinds {
		c, _ := prof.MemberCert(k, signer.CertIdentity(m))
		if !seen[c] {
			seen[c] = true
			jn.kinds = append(jn.kinds, k)
		}
	}
	params := map[string]string{"name": m.Name, "peerURL": m.PeerURL, "profile": prof.Name}
	var resumed bool
	if jn.j, resumed, err = journal.Begin(jn.root, "join", params, jn.now(), o.DryRun); err != nil {
		return nil, err
	}
	if resumed {
		fmt.Fprintf(jn.out, "resuming join run %s from %s\n", jn.j.RunID, jn.j.File())
	}
	return jn, nil
}

func defaultClientURL(peer string) string {
	i := strings.LastIndex(peer, ":")
	if i < 0 {
		return peer
	}
	return peer[:i] + ":2379"
}

func (jn *joiner) abs(rel string) string { return filepath.Join(jn.root, rel) }

func (jn *joiner) certRel(kind string) (cert, key string) {
	return jn.prof.MemberCert(kind, signer.CertIdentity(jn.m))
}

// ours reports whether a file is the one this join wrote (its hash is noted).
func (jn *joiner) ours(rel string) bool {
	want := jn.j.Notes["file:"+rel]
	if want == "" {
		return false
	}
	b, err := os.ReadFile(jn.abs(rel))
	return err == nil && hashOf(b) == want
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeOurs writes a file atomically and notes it as this join's.
func (jn *joiner) writeOurs(rel string, data []byte, mode fs.FileMode) error {
	p := jn.abs(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return jn.j.Note("file:"+rel, hashOf(data))
}

func (jn *joiner) steps(final *Progress) []steps.Step {
	list := []steps.Step{
		jn.keepStep(),
		jn.keysStep(),
		jn.certsStep(),
		jn.memberAddStep(),
		jn.configStep(),
	}
	if !jn.o.NoWait {
		list = append(list, jn.waitStep(final))
	}
	return list
}

// ---- keep-old-state

// old lists what is in the way: etcd state this join did not write. The
// data dir's contents are moved (the folder stays: it may be a mount
// point); the environment file is copied, as only its recover block changes.
func (jn *joiner) old() (move []string, dataDir bool, copy []string) {
	var files []string
	files = append(files, jn.prof.Manifest)
	for _, k := range jn.kinds {
		c, key := jn.certRel(k)
		files = append(files, c, key)
	}
	for _, rel := range files {
		if exists(jn.abs(rel)) && !jn.ours(rel) {
			move = append(move, rel)
		}
	}
	dataDir = jn.j.Notes["dir:"+jn.prof.DataDir] == "" && len(keep.Entries(jn.abs(jn.prof.DataDir))) > 0
	if env := jn.prof.EnvFile; env != "" && exists(jn.abs(env)) && !jn.ours(env) {
		copy = append(copy, env)
	}
	return move, dataDir, copy
}

func (jn *joiner) keeper() *keep.Keeper {
	return &keep.Keeper{Root: jn.root, Journal: jn.j, Out: jn.out}
}

func (jn *joiner) keepStep() steps.Step {
	return steps.Step{
		Name: "keep-old-state",
		Describe: func() string {
			move, dataDir, cp := jn.old()
			if dataDir {
				move = append(move, jn.prof.DataDir+"/*")
			}
			return fmt.Sprintf("move %s and copy %s to %s", orNone(move), orNone(cp), jn.j.BackupDir(jn.root))
		},
		Check: func(context.Context) (steps.State, error) {
			move, dataDir, cp := jn.old()
			if len(move)+len(cp) == 0 && !dataDir {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			k := jn.keeper()
			move, dataDir, cp := jn.old()
			for _, rel := range cp {
				if err := k.Copy(jn.abs(rel), k.Backup(rel)); err != nil {
					return err
				}
			}
			for _, rel := range move {
				if err := k.Move(jn.abs(rel), k.Backup(rel)); err != nil {
					return err
				}
			}
			if dataDir {
				if _, err := k.MoveContents(jn.abs(jn.prof.DataDir), jn.prof.DataDir); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

// kept returns the path a file was kept at by this run, or "".
func (jn *joiner) kept(rel string) string { return jn.keeper().Where(jn.abs(rel)) }

// ---- keys

func (jn *joiner) keysStep() steps.Step {
	missing := func() []string {
		var out []string
		for _, k := range jn.kinds {
			_, key := jn.certRel(k)
			if !jn.ours(key) {
				out = append(out, k)
			}
		}
		return out
	}
	return steps.Step{
		Name: "keys",
		Describe: func() string {
			return fmt.Sprintf("generate ECDSA P-256 keys for %s certificates of %s", strings.Join(missing(), ", "), jn.m.Name)
		},
		Check: func(context.Context) (steps.State, error) {
			if len(missing()) == 0 {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			for _, k := range missing() {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					return err
				}
				b, err := pki.MarshalKeyPEM(key)
				if err != nil {
					return err
				}
				_, rel := jn.certRel(k)
				if err := jn.writeOurs(rel, b, 0o600); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// ---- certificates

func (jn *joiner) caFile() string {
	if jn.o.CACert != "" {
		return jn.o.CACert
	}
	return jn.abs(jn.prof.CACert)
}

// loadCA reads the CA certificate the member uses.
func (jn *joiner) loadCA() (*x509.Certificate, error) {
	b, err := os.ReadFile(jn.abs(jn.prof.CACert))
	if err != nil {
		return nil, err
	}
	return pki.ParseCertPEM(b)
}

// certsValid checks the member's certificates: each verifies against the
// CA, matches its key, names the member and lasts at least another hour.
func (jn *joiner) certsValid() error {
	ca, err := jn.loadCA()
	if err != nil {
		return fmt.Errorf("etcd CA: %w", err)
	}
	for _, k := range jn.kinds {
		c, key := jn.certRel(k)
		cb, err := os.ReadFile(jn.abs(c))
		if err != nil {
			return err
		}
		kb, err := os.ReadFile(jn.abs(key))
		if err != nil {
			return err
		}
		if err := verifyCert(cb, kb, ca, signer.CommonName(k, jn.m), jn.now()); err != nil {
			return fmt.Errorf("%s certificate %s: %w", k, c, err)
		}
	}
	return nil
}

func verifyCert(certPEM, keyPEM []byte, ca *x509.Certificate, cn string, now time.Time) error {
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: now}); err != nil {
		return fmt.Errorf("does not verify against the etcd CA: %w", err)
	}
	if cert.Subject.CommonName != cn {
		return fmt.Errorf("common name is %q, want %q", cert.Subject.CommonName, cn)
	}
	if cert.NotAfter.Before(now.Add(time.Hour)) {
		return fmt.Errorf("expires %s", cert.NotAfter.Format(time.RFC3339))
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return err
	}
	type eq interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := cert.PublicKey.(eq); !ok || !pub.Equal(key.Public()) {
		return errors.New("does not match its private key")
	}
	return nil
}

func (jn *joiner) certsStep() steps.Step {
	return steps.Step{
		Name: "certificates",
		Describe: func() string {
			return fmt.Sprintf("request %s certificates for %s from the signer %s and verify them against the etcd CA",
				strings.Join(jn.kinds, ", "), jn.m.Name, jn.o.Signer)
		},
		Check: func(context.Context) (steps.State, error) {
			if jn.certsValid() == nil {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: jn.requestCerts,
	}
}

func (jn *joiner) trust() (signer.Trust, error) {
	if jn.o.CAHash != "" {
		return signer.Trust{CAHash: jn.o.CAHash}, nil
	}
	b, err := os.ReadFile(jn.caFile())
	if err != nil {
		return signer.Trust{}, fmt.Errorf("no etcd CA certificate to verify the signer with (%v): pass --cacert FILE or --ca-hash sha256:… (the signer prints it)", err)
	}
	ca, err := pki.ParseCertPEM(b)
	if err != nil {
		return signer.Trust{}, fmt.Errorf("CA certificate %s: %w", jn.caFile(), err)
	}
	return signer.Trust{CA: ca}, nil
}

func (jn *joiner) requestCerts(ctx context.Context) error {
	if jn.o.Signer == "" {
		return errors.New("this master has no valid etcd certificates yet: give the signer's URL (--signer https://IP:9943)")
	}
	if jn.o.Token == "" {
		return errors.New("this master has no valid etcd certificates yet: give its bootstrap token (--token or --token-file)")
	}
	trust, err := jn.trust()
	if err != nil {
		return err
	}
	req := signer.CertRequest{Name: jn.m.Name, Token: jn.o.Token, CSRs: map[string]string{}}
	keys := map[string][]byte{}
	for _, k := range jn.kinds {
		_, keyRel := jn.certRel(k)
		kb, err := os.ReadFile(jn.abs(keyRel))
		if err != nil {
			return err
		}
		keys[k] = kb
		csr, err := makeCSR(kb, k, jn.m, jn.prof)
		if err != nil {
			return err
		}
		req.CSRs[k] = string(csr)
	}
	cl, err := signer.NewClient(jn.o.Signer, trust, nil)
	if err != nil {
		return err
	}
	var resp *signer.CertResponse
	err = jn.retrySigner(ctx, "certificates", func() (err error) {
		resp, err = cl.Certificates(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	ca, err := pki.ParseCertPEM([]byte(resp.CA))
	if err != nil {
		return fmt.Errorf("signer's CA: %w", err)
	}
	switch {
	case trust.CA != nil && !trust.CA.Equal(ca):
		return fmt.Errorf("the signer answered with another CA than %s: refusing its certificates", jn.caFile())
	case trust.CAHash != "" && signer.SPKIHash(ca) != strings.ToLower(trust.CAHash):
		return fmt.Errorf("the signer's CA does not match the pin %s: refusing its certificates", trust.CAHash)
	}
	for _, k := range jn.kinds {
		if err := verifyCert([]byte(resp.Certs[k]), keys[k], ca, signer.CommonName(k, jn.m), jn.now()); err != nil {
			return fmt.Errorf("signer's %s certificate: %w", k, err)
		}
	}
	// The member needs the CA too (its trusted-ca-file). A different CA
	// file in the way is kept aside first.
	caRel := jn.prof.CACert
	if have, err := os.ReadFile(jn.abs(caRel)); err != nil || string(have) != resp.CA {
		if err == nil {
			if err := jn.keeper().Move(jn.abs(caRel), jn.keeper().Backup(caRel)); err != nil {
				return err
			}
		}
		if err := jn.writeOurs(caRel, []byte(resp.CA), 0o644); err != nil {
			return err
		}
	}
	for _, k := range jn.kinds {
		c, _ := jn.certRel(k)
		if err := jn.writeOurs(c, []byte(resp.Certs[k]), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// retrySigner calls fn until it succeeds, the signer refuses for good, or
// SignerTimeout ends: a master may boot before the restored master's
// signer or etcd is up, which shows as a connection error or a 503.
func (jn *joiner) retrySigner(ctx context.Context, what string, fn func() error) error {
	timeout := jn.o.SignerTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		err := fn()
		var re *signer.RefusedError
		if err == nil || (errors.As(err, &re) && re.Status != http.StatusServiceUnavailable) || time.Now().After(deadline) {
			return err
		}
		if err.Error() != last {
			fmt.Fprintf(jn.out, "%s: signer not ready (%v); retrying for up to %s\n", what, err, time.Until(deadline).Round(time.Second))
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

// makeCSR builds a CSR for a member's certificate kind with the SANs the
// plan allows it: its names and address, loopback, and on OpenShift the
// etcd service names for server and metric certificates.
func makeCSR(keyPEM []byte, kind string, m plan.Member, prof *profile.Profile) ([]byte, error) {
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	dns, ips := signer.AllowedSANs(prof, kind, m)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: signer.CommonName(kind, m)},
		DNSNames:    dns,
		IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ---- member-add

// client connects to the cluster with the member's own peer certificate.
func (jn *joiner) client() (*clientv3.Client, error) {
	if jn.cli != nil {
		return jn.cli, nil
	}
	c, key := jn.certRel("peer")
	cli, err := members.Dial(members.Creds{Endpoints: jn.o.Endpoints, CACert: jn.abs(jn.prof.CACert), Cert: jn.abs(c), Key: jn.abs(key)})
	if err != nil {
		return nil, err
	}
	jn.cli = cli
	return cli, nil
}

func (jn *joiner) memberAddStep() steps.Step {
	return steps.Step{
		Name: "member-add",
		Describe: func() string {
			via := "through the signer " + jn.o.Signer
			if jn.o.Signer == "" {
				via = "directly at " + strings.Join(jn.o.Endpoints, ",")
			}
			return fmt.Sprintf("add %s (peer %s) as an etcd learner %s", jn.m.Name, jn.m.PeerURL, via)
		},
		Check: func(ctx context.Context) (steps.State, error) {
			if jn.certsValid() != nil {
				return steps.ToDo, nil // dry run before the certificates exist
			}
			cli, err := jn.client()
			if err != nil {
				return 0, err
			}
			ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			list, err := members.List(ctx, cli)
			if err != nil {
				return 0, fmt.Errorf("%w: etcd at %s does not answer; is the restored master's etcd up and reachable from this master?", err, strings.Join(jn.o.Endpoints, ","))
			}
			req := members.AddRequest{Name: jn.m.Name, PeerURL: jn.m.PeerURL, ReplaceStale: jn.o.ReplaceStale}
			self, stale := members.Classify(list, req)
			if self != nil {
				if jn.j.Notes["initialCluster"] == "" && !jn.o.DryRun {
					if err := jn.noteMember(self.ID, members.InitialCluster(list, self.ID, jn.m.Name)); err != nil {
						return 0, err
					}
				}
				return steps.Done, nil
			}
			if len(stale) > 0 && !jn.o.ReplaceStale {
				var s []string
				for _, m := range stale {
					s = append(s, m.String())
				}
				return 0, fmt.Errorf("%w: %s; if it is an old master's, run again with --replace-stale to remove it first", members.ErrStale, strings.Join(s, ", "))
			}
			if err := members.CheckPending(list, stale); err != nil {
				return 0, err
			}
			return steps.ToDo, nil
		},
		Run: jn.addMember,
	}
}

func (jn *joiner) noteMember(id uint64, initialCluster string) error {
	if err := jn.j.Note("memberID", fmt.Sprintf("%x", id)); err != nil {
		return err
	}
	return jn.j.Note("initialCluster", initialCluster)
}

func (jn *joiner) addMember(ctx context.Context) error {
	if jn.o.Signer == "" {
		cli, err := jn.client()
		if err != nil {
			return err
		}
		res, err := members.AddLearner(ctx, cli, members.AddRequest{Name: jn.m.Name, PeerURL: jn.m.PeerURL, ReplaceStale: jn.o.ReplaceStale})
		if err != nil {
			return err
		}
		for _, st := range res.Removed {
			fmt.Fprintf(jn.out, "member-add: removed stale member %s\n", st)
		}
		return jn.noteMember(res.ID, res.InitialCluster)
	}
	trust, err := jn.trust()
	if err != nil {
		return err
	}
	c, key := jn.certRel("peer")
	pair, err := tls.LoadX509KeyPair(jn.abs(c), jn.abs(key))
	if err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	cl, err := signer.NewClient(jn.o.Signer, trust, &pair)
	if err != nil {
		return err
	}
	var resp *signer.MemberResponse
	err = jn.retrySigner(ctx, "member-add", func() (err error) {
		resp, err = cl.AddMember(ctx, signer.MemberRequest{Name: jn.m.Name, PeerURL: jn.m.PeerURL, ReplaceStale: jn.o.ReplaceStale})
		return err
	})
	if err != nil {
		return err
	}
	for _, st := range resp.Removed {
		fmt.Fprintf(jn.out, "member-add: removed stale member %s\n", st)
	}
	id, err := strconv.ParseUint(resp.ID, 16, 64)
	if err != nil {
		return fmt.Errorf("signer returned member ID %q: %w", resp.ID, err)
	}
	return jn.noteMember(id, resp.InitialCluster)
}

// ---- write-config

// rendered returns the files the member's etcd configuration consists of,
// in write order (environment file before the manifest, which the kubelet
// acts on at once).
func (jn *joiner) rendered() ([][2]string, error) {
	ic := jn.j.Notes["initialCluster"]
	if ic == "" {
		return nil, errors.New("no initial cluster recorded: the member-add step has not run")
	}
	mc := MemberConfig{Name: jn.m.Name, InitialCluster: ic, State: "existing", PeerURL: jn.m.PeerURL}
	var out [][2]string
	base := ""
	if k := jn.kept(jn.prof.Manifest); k != "" {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, fmt.Errorf("kept manifest: %w", err)
		}
		base = string(b)
	}
	var manifest string
	var err error
	switch {
	case base != "" && jn.prof.Name == profile.OpenShift43:
		manifest = setScriptFlags(patchOpenShiftManifest(base), mc)
	case base != "":
		manifest, err = setFlags(base, [][2]string{
			{"name", mc.Name}, {"initial-cluster", mc.InitialCluster},
			{"initial-cluster-state", mc.State}, {"initial-advertise-peer-urls", mc.PeerURL},
		})
	default:
		sc, sk := jn.certRel("server")
		pc, pk := jn.certRel("peer")
		manifest, err = renderFresh(freshSpec{
			Prof: jn.prof, Image: jn.o.Image, Config: mc, ClientURL: jn.m.ClientURL, ListenIP: jn.o.ListenIP,
			ServerCert: "/" + sc, ServerKey: "/" + sk, PeerCert: "/" + pc, PeerKey: "/" + pk, CACert: "/" + jn.prof.CACert,
		})
	}
	if err != nil {
		return nil, err
	}
	if jn.prof.EnvFile != "" {
		envBase := ""
		if k := jn.kept(jn.prof.EnvFile); k != "" {
			b, err := os.ReadFile(k)
			if err != nil {
				return nil, fmt.Errorf("kept %s: %w", jn.prof.EnvFile, err)
			}
			envBase = string(b)
		}
		out = append(out, [2]string{jn.prof.EnvFile, renderEnvFile(envBase, manifest, mc)})
	}
	return append(out, [2]string{jn.prof.Manifest, manifest}), nil
}

func (jn *joiner) configStep() steps.Step {
	return steps.Step{
		Name: "write-config",
		Describe: func() string {
			what := jn.prof.Manifest
			if jn.prof.EnvFile != "" {
				what = jn.prof.EnvFile + " (recover block) and " + what
			}
			ic := jn.j.Notes["initialCluster"]
			if ic == "" {
				ic = "<current members>+" + jn.m.Name
			}
			return fmt.Sprintf("write %s: initial-cluster=%s, initial-cluster-state=existing", what, ic)
		},
		Check: func(context.Context) (steps.State, error) {
			files, err := jn.rendered()
			if err != nil {
				return steps.ToDo, nil
			}
			for _, f := range files {
				if b, err := os.ReadFile(jn.abs(f[0])); err != nil || string(b) != f[1] {
					return steps.ToDo, nil
				}
			}
			if jn.j.Notes["dir:"+jn.prof.DataDir] == "" {
				return steps.ToDo, nil
			}
			return steps.Done, nil
		},
		Run: func(context.Context) error {
			files, err := jn.rendered()
			if err != nil {
				return err
			}
			// The data dir etcd creates from here on is this member's.
			if err := os.MkdirAll(jn.abs(jn.prof.DataDir), 0o700); err != nil {
				return err
			}
			if err := jn.j.Note("dir:"+jn.prof.DataDir, "ours"); err != nil {
				return err
			}
			for _, f := range files {
				if err := jn.writeOurs(f[0], []byte(f[1]), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// ---- wait-healthy

func (jn *joiner) waitStep(final *Progress) steps.Step {
	return steps.Step{
		Name: "wait-healthy",
		Describe: func() string {
			t := jn.o.WaitTimeout
			if t == 0 {
				t = 20 * time.Minute
			}
			return fmt.Sprintf("wait up to %s until %s is started, promoted to a voting member and its HashKV equals the leader's", t, jn.m.Name)
		},
		Check: func(ctx context.Context) (steps.State, error) {
			if jn.certsValid() != nil {
				return steps.ToDo, nil
			}
			cli, err := jn.client()
			if err != nil {
				return 0, err
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if p, err := Probe(ctx, cli, jn.m.PeerURL); err == nil && p.Done() {
				*final = p
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error {
			cli, err := jn.client()
			if err != nil {
				return err
			}
			p, err := Wait(ctx, cli, WaitOptions{PeerURL: jn.m.PeerURL, Timeout: jn.o.WaitTimeout, Interval: jn.o.WaitInterval, Promote: true, Out: jn.out})
			*final = p
			return err
		},
	}
}

// ---- files

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

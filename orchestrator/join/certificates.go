package join

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

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
	deadline := jn.now().Add(timeout)
	last := ""
	for {
		err := fn()
		var re *signer.RefusedError
		if err == nil || (errors.As(err, &re) && re.Status != http.StatusServiceUnavailable) || jn.now().After(deadline) {
			return err
		}
		if err.Error() != last {
			fmt.Fprintf(jn.out, "%s: signer not ready (%v); retrying for up to %s\n", what, err, deadline.Sub(jn.now()).Round(time.Second))
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

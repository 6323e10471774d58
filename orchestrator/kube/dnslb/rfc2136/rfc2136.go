// Package rfc2136 applies a DNS change as one RFC 2136 dynamic update
// (what BIND's nsupdate sends), optionally signed with a TSIG key: each
// record's RRset is replaced by the wanted values in a single message, so
// the zone never holds a half-applied change.
package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb"
)

// Config says where and how to send the update.
type Config struct {
	// Server is the primary name server, host:port (port 53 when missing).
	Server string
	// Zone is the zone to update (clustername.example.com). Default the
	// change's domain.
	Zone string
	// TSIGName, TSIGSecret (base64) and TSIGAlgorithm sign the update.
	// Empty name means unsigned. Default algorithm hmac-sha256.
	TSIGName, TSIGSecret, TSIGAlgorithm string
	// TCP sends the update over TCP. Default: UDP, or TCP when the
	// update does not fit a 512-byte UDP message.
	TCP bool
	// Timeout of the exchange. Default 10s.
	Timeout time.Duration
}

// ParseTSIG reads a key given as [algorithm:]name:secret, as nsupdate -y does.
func ParseTSIG(s string) (alg, name, secret string, err error) {
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 2:
		alg, name, secret = "hmac-sha256", parts[0], parts[1]
	case 3:
		alg, name, secret = parts[0], parts[1], parts[2]
	default:
		return "", "", "", fmt.Errorf("TSIG key %q is not [algorithm:]name:base64-secret", s)
	}
	if name == "" || secret == "" {
		return "", "", "", fmt.Errorf("TSIG key %q has an empty name or secret", s)
	}
	return alg, name, secret, nil
}

// Message builds the update message for a change.
func Message(cfg Config, c dnslb.DNSChange) (*dns.Msg, error) {
	zone := cfg.Zone
	if zone == "" {
		zone = c.Domain
	}
	if zone == "" {
		return nil, errors.New("no zone: give --zone")
	}
	zone = dns.Fqdn(zone)
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Compress = true
	for _, r := range c.Records {
		name := dns.Fqdn(r.Name)
		if !dns.IsSubDomain(zone, name) {
			return nil, fmt.Errorf("record %s is outside zone %s: give the zone that holds it (--zone)", name, zone)
		}
		rtype, ok := dns.StringToType[r.Type]
		if !ok || (rtype != dns.TypeA && rtype != dns.TypeAAAA && rtype != dns.TypeSRV) {
			return nil, fmt.Errorf("record %s: type %q is not A, AAAA or SRV", name, r.Type)
		}
		if len(r.Values) == 0 {
			return nil, fmt.Errorf("record %s has no values: refusing to delete it", name)
		}
		var rrs []dns.RR
		for _, v := range r.Values {
			rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", name, r.TTL, r.Type, v))
			if err != nil || rr == nil {
				return nil, fmt.Errorf("record %s %s value %q: %v", name, r.Type, v, err)
			}
			rrs = append(rrs, rr)
		}
		m.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: rtype, Class: dns.ClassINET}}})
		m.Insert(rrs)
	}
	return m, nil
}

// Apply sends the change to the server and checks its answer.
func Apply(ctx context.Context, cfg Config, c dnslb.DNSChange) error {
	m, err := Message(cfg, c)
	if err != nil {
		return err
	}
	server := cfg.Server
	if server == "" {
		return errors.New("no DNS server: give --server host[:port]")
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	cl := &dns.Client{Timeout: cfg.Timeout}
	if cl.Timeout == 0 {
		cl.Timeout = 10 * time.Second
	}
	// Without EDNS a UDP message is at most 512 bytes; a larger update
	// (a TSIG record adds about 100) goes over TCP, as nsupdate does.
	if cfg.TCP || m.Len() > 400 {
		cl.Net = "tcp"
	}
	if cfg.TSIGName != "" {
		alg := cfg.TSIGAlgorithm
		if alg == "" {
			alg = "hmac-sha256"
		}
		name := dns.Fqdn(cfg.TSIGName)
		cl.TsigSecret = map[string]string{name: cfg.TSIGSecret}
		m.SetTsig(name, dns.Fqdn(alg), 300, time.Now().Unix())
	}
	resp, _, err := cl.ExchangeContext(ctx, m, server)
	if err != nil {
		return fmt.Errorf("dynamic update of zone %s at %s: %w", m.Question[0].Name, server, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		hint := ""
		switch resp.Rcode {
		case dns.RcodeRefused, dns.RcodeNotAuth:
			hint = ": the server does not allow this update; check allow-update/update-policy for the zone and the TSIG key"
		case dns.RcodeNotZone:
			hint = ": a record is outside the zone; check --zone"
		}
		return fmt.Errorf("dynamic update of zone %s at %s answered %s%s", m.Question[0].Name, server, dns.RcodeToString[resp.Rcode], hint)
	}
	return nil
}

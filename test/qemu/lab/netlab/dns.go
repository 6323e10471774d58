package netlab

import (
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// DNS is an authoritative name server on the lab bridge (UDP port 53 of
// the gateway) for the lab's names: A records of the masters' etcd-N names
// and the _etcd-server-ssl._tcp SRV records OpenShift's etcd discovery
// reads. Records change while it runs, as an operator corrects DNS.
type DNS struct {
	mu   sync.Mutex
	a    map[string]net.IP
	srv  map[string][]*dns.SRV
	srvr *dns.Server
}

// StartDNS starts the server; Close stops it.
func (n *Net) StartDNS() (*DNS, error) {
	d := &DNS{a: map[string]net.IP{}, srv: map[string][]*dns.SRV{}}
	var pc net.PacketConn
	if err := n.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", net.JoinHostPort(n.Gateway.String(), "53"))
		return err
	}); err != nil {
		return nil, fmt.Errorf("lab DNS: %w", err)
	}
	d.srvr = &dns.Server{PacketConn: pc, Handler: d}
	go func() { _ = d.srvr.ActivateAndServe() }()
	return d, nil
}

// Close stops the server.
func (d *DNS) Close() error { return d.srvr.Shutdown() }

// SetA points name at ip (replacing what it pointed at).
func (d *DNS) SetA(name, ip string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.a[dns.Fqdn(strings.ToLower(name))] = net.ParseIP(ip).To4()
}

// SetEtcdSRV sets the _etcd-server-ssl._tcp.domain records to targets, on
// the given peer port.
func (d *DNS) SetEtcdSRV(domain string, port uint16, targets ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := dns.Fqdn("_etcd-server-ssl._tcp." + strings.ToLower(domain))
	var rr []*dns.SRV
	for _, tg := range targets {
		rr = append(rr, &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
			Priority: 0, Weight: 10, Port: port, Target: dns.Fqdn(tg)})
	}
	d.srv[name] = rr
}

// ServeDNS answers A and SRV questions from the records; other types of a
// known name get an empty answer, unknown names NXDOMAIN.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	d.mu.Lock()
	known := false
	for _, q := range req.Question {
		name := strings.ToLower(q.Name)
		if ip, ok := d.a[name]; ok {
			known = true
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: ip})
			}
		}
		if rr, ok := d.srv[name]; ok {
			known = true
			if q.Qtype == dns.TypeSRV {
				for _, r := range rr {
					m.Answer = append(m.Answer, r)
				}
			}
		}
	}
	d.mu.Unlock()
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

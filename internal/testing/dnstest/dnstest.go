// Package dnstest runs an authoritative DNS server for one zone on
// 127.0.0.1 (UDP and TCP, same port) for tests: it answers queries from its
// records and applies RFC 2136 dynamic updates signed with its TSIG key.
package dnstest

import (
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is an authoritative DNS server for one zone on 127.0.0.1 that
// answers queries and applies RFC 2136 updates signed with its TSIG key.
type Server struct {
	Addr string
	Zone string
	mu   sync.Mutex
	rrs  []dns.RR
	srv  *dns.Server
}

const (
	// KeyName and KeySecret are the TSIG key the server accepts updates with.
	KeyName   = "etcd-rescue."
	KeySecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=" // base64
)

// Start serves zone with the given records until test cleanup.
func Start(t testing.TB, zone string, records ...string) *Server {
	t.Helper()
	s := &Server{Zone: dns.Fqdn(zone)}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		s.rrs = append(s.rrs, rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = pc.LocalAddr().String()
	started := make(chan struct{})
	s.srv = &dns.Server{PacketConn: pc, Handler: s, TsigSecret: map[string]string{KeyName: KeySecret}, NotifyStartedFunc: func() { close(started) }, MsgInvalidFunc: func(m []byte, err error) { t.Logf("invalid DNS message: %v", err) },
		// The default accept function answers NOTIMP to updates.
		MsgAcceptFunc: func(dh dns.Header) dns.MsgAcceptAction {
			if int(dh.Bits>>11)&0xF == dns.OpcodeUpdate {
				return dns.MsgAccept
			}
			return dns.DefaultMsgAcceptFunc(dh)
		}}
	go s.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { s.srv.Shutdown() })
	// The same port over TCP, for updates too large for UDP.
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tcpStarted := make(chan struct{})
	tcp := &dns.Server{Listener: l, Handler: s, TsigSecret: s.srv.TsigSecret, MsgAcceptFunc: s.srv.MsgAcceptFunc, NotifyStartedFunc: func() { close(tcpStarted) }}
	go tcp.ActivateAndServe()
	<-tcpStarted
	t.Cleanup(func() { tcp.Shutdown() })
	return s
}

// ServeDNS answers a query from the records, or applies an update.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Opcode {
	case dns.OpcodeUpdate:
		switch {
		case r.IsTsig() == nil || w.TsigStatus() != nil:
			m.Rcode = dns.RcodeRefused
		case len(r.Question) != 1 || r.Question[0].Name != s.Zone:
			m.Rcode = dns.RcodeNotAuth
		default:
			s.apply(r.Ns)
		}
	default:
		q := r.Question[0]
		m.Authoritative = true
		for _, rr := range s.rrs {
			if strings.EqualFold(rr.Header().Name, q.Name) && rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		if len(m.Answer) == 0 && !s.exists(q.Name) {
			m.Rcode = dns.RcodeNameError
		}
	}
	if t := r.IsTsig(); t != nil {
		m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
	}
	w.WriteMsg(m)
}

func (s *Server) exists(name string) bool {
	return slices.ContainsFunc(s.rrs, func(rr dns.RR) bool { return strings.EqualFold(rr.Header().Name, name) })
}

// apply runs the update section: class ANY deletes an RRset, class NONE one
// record, class IN adds one (RFC 2136 section 3.4.2).
func (s *Server) apply(ns []dns.RR) {
	for _, u := range ns {
		h := u.Header()
		switch h.Class {
		case dns.ClassANY:
			s.rrs = slices.DeleteFunc(s.rrs, func(rr dns.RR) bool {
				return strings.EqualFold(rr.Header().Name, h.Name) && (h.Rrtype == dns.TypeANY || rr.Header().Rrtype == h.Rrtype)
			})
		case dns.ClassNONE:
			s.rrs = slices.DeleteFunc(s.rrs, func(rr dns.RR) bool { return dns.IsDuplicate(rr, u) })
		default:
			s.rrs = append(s.rrs, u)
		}
	}
}

// Query asks the server for name's records of a type, sorted.
func Query(t testing.TB, addr, name string, qtype uint16) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, err := dns.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		f := strings.SplitN(rr.String(), "\t", 5)
		out = append(out, f[len(f)-1])
	}
	sort.Strings(out)
	return out
}

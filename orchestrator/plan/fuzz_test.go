package plan

import (
	"net"
	"net/url"
	"strconv"
	"testing"
)

// FuzzParse: any input is a plan or an error, never a panic; a plan that
// parses survives a write and a read unchanged in meaning, and passes the
// checks restore and join apply to its parts.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(netPlan))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		for _, m := range p.Members {
			if err := CheckMemberName(m.Name); err != nil {
				t.Fatalf("parsed plan has member name %q: %v", m.Name, err)
			}
			if err := CheckPeerURL(m.PeerURL); err != nil {
				t.Fatalf("parsed plan has peer URL %q: %v", m.PeerURL, err)
			}
		}
		if _, err := ParseInitialCluster(InitialCluster(p.Members...)); err != nil {
			t.Fatalf("the plan's own --initial-cluster is refused: %v", err)
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("marshal a parsed plan: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("a written plan does not read back: %v\n%s", err, out)
		}
	})
}

// FuzzCheckPeerURL: an accepted URL has a host and a port from 1 to 65535.
func FuzzCheckPeerURL(f *testing.F) {
	for _, s := range []string{"https://10.0.0.1:2380", "https://[fd00::1]:2380/", "http://h:0", "https://u@h:1?x#y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckPeerURL(s) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("accepted %q does not parse: %v", s, err)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" {
			t.Fatalf("accepted %q has no host:port", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("accepted %q has port %q", s, port)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
			t.Fatalf("accepted %q has more than scheme, host and port", s)
		}
	})
}

package plan

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// CheckPeerURL checks an etcd peer URL strictly: the rules etcd and the
// certificates the signer issues need, and that a typo cannot slip through.
// restore and join apply it to --initial-cluster and URL flags, Validate to
// every URL of a plan.
func CheckPeerURL(s string) error { return checkURL(s, "https://HOST:2380", true) }

// CheckClientURL is CheckPeerURL for a client URL (https://HOST:2379).
func CheckClientURL(s string) error { return checkURL(s, "https://HOST:2379", true) }

// checkURL accepts SCHEME://HOST:PORT[/] with SCHEME https (or http when
// plain is true), a host, a port from 1 to 65535, and nothing else: no user
// info, path, query or fragment.
func checkURL(s, example string, plain bool) error {
	schemes := "https://"
	if plain {
		schemes = "https:// or http://"
	}
	if s == "" {
		return fmt.Errorf("is empty: give %s", example)
	}
	if strings.TrimSpace(s) != s || strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%q has spaces or control characters: give %s", s, example)
	}
	if !strings.Contains(s, "://") {
		return fmt.Errorf("%q must start with %s (like %s)", s, schemes, example)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q does not parse (%v): give %s", s, err, example)
	}
	switch {
	case u.Scheme != "https" && !(plain && u.Scheme == "http"):
		return fmt.Errorf("%q must start with %s (like %s)", s, schemes, example)
	case u.Opaque != "" || u.Host == "":
		return fmt.Errorf("%q has no host: give %s", s, example)
	case u.User != nil:
		return fmt.Errorf("%q carries user info (%s@): etcd URLs take none; give %s", s, u.User.Username(), example)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("%q has a path (%s): etcd URLs take none; give %s", s, u.Path, example)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("%q has a query (?%s): etcd URLs take none; give %s", s, u.RawQuery, example)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("%q has a fragment (#%s): etcd URLs take none; give %s", s, u.Fragment, example)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return fmt.Errorf("%q has no port: give %s", s, example)
	}
	if host == "" {
		return fmt.Errorf("%q has no host: give %s", s, example)
	}
	if strings.Contains(host, "%") {
		return fmt.Errorf("%q has an IPv6 zone: etcd peers need a routable address", s)
	}
	if strings.HasPrefix(u.Host, "[") != (net.ParseIP(host) != nil && strings.Contains(host, ":")) {
		return fmt.Errorf("%q: host %s is not a valid host (IPv6 addresses go in brackets: https://[fd00::1]:2380)", s, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("%q: port %q is not a port from 1 to 65535: give %s", s, port, example)
	}
	return nil
}

// hostPort is a URL's host and port in one canonical form (host lowercase,
// IPs in their shortest form), to compare URLs of different members.
func hostPort(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return strings.ToLower(u.Host)
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

// CheckMemberName checks an etcd member name as --initial-cluster carries
// it: not empty, no "," or "=" (they separate entries), no spaces or
// control characters.
func CheckMemberName(name string) error {
	if name == "" {
		return errors.New("member name is empty")
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return r == ',' || r == '=' || unicode.IsSpace(r) || unicode.IsControl(r)
	}); i >= 0 {
		return fmt.Errorf("member name %q contains %q: names go into --initial-cluster (name=url,...) and may not hold \",\", \"=\", spaces or control characters; use the name etcd knows the member by (etcdctl member list)", name, name[i:i+1])
	}
	return nil
}

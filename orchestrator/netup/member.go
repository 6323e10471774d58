package netup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/netconf"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// LoadModules loads kernel modules by name (bonding, 8021q) with what they
// depend on; nil means they are built in or loaded already.
type LoadModules func(names ...string) error

// Member brings up member m's network and says on out what it configured
// and why: members[].network from the plan; else the master's own
// configuration on root (the folder the master's root is mounted on, "" if
// none was found); else, when neither gives one, m's address on the first
// interface (Static). wait bounds how long it waits for the NICs to appear.
func Member(ctx context.Context, m plan.Member, root string, load LoadModules, wait time.Duration, out io.Writer) error {
	if m.IP == "" {
		return Static(ctx, m, wait, out)
	}
	n, err := netconf.FromPlan(m)
	if err != nil {
		return err
	}
	if n == nil && root != "" {
		n, err = fromRoot(root, m)
		if err != nil {
			fmt.Fprintf(out, "network: the master's own configuration: %s\n", oneLine(err))
			fmt.Fprintf(out, "network: so member %s's address goes on the first interface, without gateway\n", m.Name)
			return Static(ctx, m, wait, out)
		}
	}
	if n == nil {
		return Static(ctx, m, wait, out)
	}
	fmt.Fprintf(out, "network: %s, from %s\n", n.Describe(), n.Source)
	got, err := apply(ctx, n, load, wait)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "network: %s up (member %s)\n", got, m.Name)
	return nil
}

func fromRoot(root string, m plan.Member) (*netconf.Network, error) {
	r, err := rootfs.Open(root)
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(m.IP)
	if err != nil {
		return nil, fmt.Errorf("member %s: ip %q is not an IP address", m.Name, m.IP)
	}
	return netconf.FromRoot(r, ip)
}

// ProbePeers opens a TCP connection to every other member's peer URL (all
// at once, each for at most timeout) and says on out which it reached and
// from which address: a peer that answers, even with "connection refused"
// (no etcd runs there yet), is reachable through the network as set up.
// It returns when every probe is done.
func ProbePeers(ctx context.Context, p *plan.Plan, self string, timeout time.Duration, out io.Writer) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, m := range p.Members {
		if m.Name == self || m.PeerURL == "" {
			continue
		}
		u, err := url.Parse(m.PeerURL)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func(name, hostPort string) {
			defer wg.Done()
			line := probe(ctx, name, hostPort, timeout)
			mu.Lock()
			fmt.Fprintln(out, line)
			mu.Unlock()
		}(m.Name, u.Host)
	}
	wg.Wait()
}

func probe(ctx context.Context, name, hostPort string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", hostPort)
	switch {
	case err == nil:
		defer c.Close()
		local, _, _ := net.SplitHostPort(c.LocalAddr().String())
		return fmt.Sprintf("network: reached %s at %s from %s", name, hostPort, local)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("network: reached %s at %s (it refused the connection: no etcd listens there yet)", name, hostPort)
	default:
		return fmt.Sprintf("network: %s at %s not reached: %s", name, hostPort, oneLine(err))
	}
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

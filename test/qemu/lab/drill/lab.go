package drill

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/vincent-petithory/dataurl"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/fixture"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/masteros"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/netlab"
	"github.com/etcd-rescue/etcd-rescue/test/qemu/lab/vm"
)

// Lab network and names.
const (
	gateway  = "10.88.0.1/24"
	dnsIP    = "10.88.0.1"
	cluster  = "drill"
	domain   = "drill.lab.example"
	peerPort = 2380
)

// lab is one drill's world: its network, CA, folder and VMs.
type lab struct {
	o   Options
	n   *netlab.Net
	dns *netlab.DNS
	ca  *pki.CA
	tls *tls.Config
	dir string
	vms []*vm.VM
}

// master is one lab master: its identity and its disk.
type master struct {
	idx  int
	fx   fixture.Master
	tree string // the root's files (source of the disk)
	disk string
	mac  string
	vm   *vm.VM
}

// newMaster is lab master idx, the etcd-N of the cluster, of the profile's
// layout: OpenShift 4.3 names the member etcd-member-<node>, kubeadm after
// the node.
func newMaster(prof string, idx, etcdN int) *master {
	node := fmt.Sprintf("master-%d.%s", idx, domain)
	member := node
	if prof == profile.OpenShift43 {
		member = "etcd-member-" + node
	}
	return &master{
		idx: idx,
		mac: fmt.Sprintf("52:54:00:88:00:%02x", 0x10+idx),
		fx: fixture.Master{
			Profile: prof, NodeName: node, MemberName: member,
			IP: fmt.Sprintf("10.88.0.%d", 10+idx), DNSName: fmt.Sprintf("etcd-%d.%s", etcdN, domain), ClusterDomain: domain,
		},
	}
}

func (m *master) planMember() plan.Member {
	return plan.Member{Name: m.fx.MemberName, Host: m.fx.NodeName, IP: m.fx.IP, Prefix: 24, DNSName: m.fx.DNSName,
		PeerURL: fmt.Sprintf("https://%s:%d", m.fx.IP, peerPort), ClientURL: m.clientURL()}
}

func (m *master) clientURL() string { return fmt.Sprintf("https://%s:2379", m.fx.IP) }

// newCA makes the lab's etcd CA and a client certificate from it.
func (l *lab) newCA() error {
	ca, err := pki.NewCA("etcd-signer", 24*time.Hour)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.Issue(pki.Request{CommonName: "etcd-rescue-drill", Usage: pki.ClientOnly})
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	l.ca = ca
	l.tls = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}
	return nil
}

// writeDisk renders the master's root (its profile's layout, certificates
// from the lab CA) and makes its ext4 disk. withCAKey false drops the CA
// key, as on a reinstalled master.
func (l *lab) writeDisk(m *master, withCAKey bool) error {
	m.tree = filepath.Join(l.dir, fmt.Sprintf("root-%d", m.idx))
	if _, err := fixture.Write(m.tree, m.fx, l.ca); err != nil {
		return err
	}
	if !withCAKey {
		prof, err := profile.Get(m.fx.Profile)
		if err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(m.tree, prof.CAKey)); err != nil {
			return err
		}
	}
	var err error
	m.disk, err = ext4Image(filepath.Join(l.dir, fmt.Sprintf("master-%d.ext4", m.idx)), m.tree, "master", 512)
	return err
}

// ext4Image makes an ext4 image of sizeMiB holding the tree src.
func ext4Image(out, src, label string, sizeMiB int) (string, error) {
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	if b, err := exec.Command("mkfs.ext4", "-q", "-F", "-t", "ext4", "-d", src, "-L", label, out).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkfs.ext4 %s: %v: %s (install e2fsprogs: make deps)", out, err, b)
	}
	return out, nil
}

// start boots a VM on the lab network.
func (l *lab) start(name, mac string, timeout time.Duration, kernel, initrd, cmdline string, fwcfg map[string]string, disks ...vm.Disk) (*vm.VM, error) {
	nic, err := l.n.Tap(mac)
	if err != nil {
		return nil, err
	}
	v, err := vm.Start(vm.Spec{Name: name, QEMU: l.n.QEMU(), Accel: l.o.Accel, Memory: 768, CPUs: 1,
		Kernel: kernel, Initrd: initrd, Append: cmdline, Disks: disks, FwCfg: fwcfg, Network: nic,
		Extra: []string{"-device", "virtio-rng-pci"}, Timeout: timeout, Log: l.o.Log})
	if err != nil {
		return nil, err
	}
	l.vms = append(l.vms, v)
	return v, nil
}

// startOS boots the master into the lab master OS.
func (l *lab) startOS(m *master, name string) error {
	// no_timer_check: under TCG on a busy host the kernel's early check
	// that the timer interrupt arrives through the IO-APIC can time out and
	// panic ("IO-APIC + timer doesn't work!") before the lab OS starts.
	cmdline := fmt.Sprintf("console=ttyS0,115200 quiet panic=-1 no_timer_check lab.node=%s lab.ip=%s/24 lab.dns=%s %s",
		m.fx.NodeName, m.fx.IP, dnsIP, masteros.InitArgs)
	v, err := l.start(name, m.mac, time.Hour, l.o.Kernel, l.o.masterOS, cmdline, nil, vm.Disk{Path: m.disk, Serial: "master"})
	m.vm = v
	return err
}

func (l *lab) waitOS(m *master) error {
	d, err := m.vm.Expect("LAB-OS-READY", 4*time.Minute)
	if err != nil {
		return err
	}
	l.o.Log("%s: lab master OS ready %s after QEMU start (%s)", m.vm.Name, d.Round(10*time.Millisecond), l.o.Accel)
	return nil
}

func (l *lab) bootOS(m *master, name string) error {
	if err := l.startOS(m, name); err != nil {
		return err
	}
	return l.waitOS(m)
}

// rescue boots the rescue image (pxe files) with an Ignition config.
func (l *lab) rescue(name, mac, config string, disks ...string) (*vm.VM, error) {
	var ds []vm.Disk
	for i, d := range disks {
		ds = append(ds, vm.Disk{Path: d, Serial: fmt.Sprintf("disk%d", i)})
	}
	return l.start(name, mac, 15*time.Minute, filepath.Join(l.o.RescueDir, "vmlinuz"), filepath.Join(l.o.RescueDir, "initrd.img"),
		l.o.rescueCmdline, map[string]string{"opt/com.coreos/config": config}, ds...)
}

// addIgnitionFile adds a file to a built Ignition config.
func addIgnitionFile(cfg []byte, path string, data []byte, mode int) ([]byte, error) {
	var c types.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, err
	}
	f := types.File{Node: types.Node{Path: path, Overwrite: ptr(true)}}
	f.Mode = ptr(mode)
	f.Contents.Source = ptr(dataurl.EncodeBytes(data))
	c.Storage.Files = append(c.Storage.Files, f)
	return json.MarshalIndent(c, "", "  ")
}

func ptr[T any](v T) *T { return &v }

// clientConfig reaches lab endpoints through the lab namespace.
func (l *lab) clientConfig(endpoints ...string) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		TLS:         l.tls,
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return l.n.Dial(ctx, "tcp", addr)
		})},
	}
}

func (l *lab) client(endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(l.clientConfig(endpoints...))
}

// clusterState is what waitMembers saw.
type clusterState struct {
	ClusterID uint64
	Members   int
}

// waitMembers waits until the cluster has exactly want started voting
// members, each answering Status with the same leader.
func (l *lab) waitMembers(cli *clientv3.Client, want int, timeout time.Duration) (clusterState, error) {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		st, why := membersReady(cli, want)
		if why == "" {
			return st, nil
		}
		if why != last {
			l.o.Log("cluster not ready yet: %s", why)
			last = why
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("the cluster is not at %d started voting members within %s: %s", want, timeout, why)
		}
		time.Sleep(time.Second)
	}
}

func membersReady(cli *clientv3.Client, want int) (clusterState, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return clusterState{}, "member list: " + err.Error()
	}
	st := clusterState{ClusterID: ml.Header.ClusterId, Members: len(ml.Members)}
	if len(ml.Members) != want {
		return st, fmt.Sprintf("%d members", len(ml.Members))
	}
	var leader uint64
	for _, m := range ml.Members {
		if m.IsLearner || m.Name == "" || len(m.ClientURLs) == 0 {
			return st, fmt.Sprintf("member %x (%s) learner=%v started=%v", m.ID, m.Name, m.IsLearner, m.Name != "")
		}
		s, err := cli.Status(ctx, m.ClientURLs[0])
		if err != nil {
			return st, fmt.Sprintf("status of %s: %v", m.Name, err)
		}
		if leader != 0 && s.Leader != leader {
			return st, "members disagree on the leader"
		}
		leader = s.Leader
	}
	if leader == 0 {
		return st, "no leader"
	}
	return st, ""
}

// Key returns the i-th drill key and its value: known values let the drill
// prove every key survived.
func Key(i int) (key, value string) {
	return fmt.Sprintf("/registry/test/key-%06d", i), fmt.Sprintf("value-%06d-%s", i, strings.Repeat("x", 64))
}

// putKeys writes keys [from, to) in transactions of 100 puts, a few at a
// time, and returns the highest revision.
func putKeys(ctx context.Context, cli *clientv3.Client, from, to int) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	const batch, workers = 100, 4
	type result struct {
		rev int64
		err error
	}
	jobs := make(chan int)
	results := make(chan result, workers)
	for w := 0; w < workers; w++ {
		go func() {
			var r result
			for start := range jobs {
				if r.err != nil {
					continue // drain: the feeder must not block
				}
				var ops []clientv3.Op
				for i := start; i < to && i < start+batch; i++ {
					k, v := Key(i)
					ops = append(ops, clientv3.OpPut(k, v))
				}
				// A leader change on a loaded host fails a request; the
				// same puts again are harmless.
				var resp *clientv3.TxnResponse
				var err error
				for attempt := 0; attempt < 5; attempt++ {
					if resp, err = cli.Txn(ctx).Then(ops...).Commit(); err == nil {
						break
					}
					time.Sleep(time.Second)
				}
				if err != nil {
					r.err = fmt.Errorf("put keys %d..: %w", start, err)
					continue
				}
				r.rev = max(r.rev, resp.Header.Revision)
			}
			results <- r
		}()
	}
	go func() {
		defer close(jobs)
		for s := from; s < to; s += batch {
			select {
			case jobs <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	var rev int64
	var errs []error
	for w := 0; w < workers; w++ {
		r := <-results
		errs = append(errs, r.err)
		rev = max(rev, r.rev)
	}
	return rev, errors.Join(errs...)
}

// checkKeys reads every test key from one member and checks that exactly
// keys [0, n) are there with their values.
func checkKeys(ctx context.Context, cli *clientv3.Client, n int) error {
	resp, err := cli.Get(ctx, "/registry/test/", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	var bad []string
	for i := 0; i < n; i++ {
		k, v := Key(i)
		if got[k] != v {
			bad = append(bad, k)
		}
		delete(got, k)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d keys missing or wrong (first %s)", len(bad), n, bad[0])
	}
	if len(got) > 0 {
		return fmt.Errorf("%d keys that were written after the backup are present", len(got))
	}
	return nil
}

// waitHashKV asks one member for its HashKV at rev, retrying while it
// catches up.
func waitHashKV(ctx context.Context, cli *clientv3.Client, ep string, rev int64) (uint32, error) {
	for {
		h, err := cli.HashKV(ctx, ep, rev)
		if err == nil {
			return h.Hash, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("HashKV of %s at revision %d: %w", ep, rev, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// debugfsList lists a folder of an ext4 image (names, without . and ..).
func debugfsList(disk, dir string) ([]string, error) {
	out, err := exec.Command("debugfs", "-R", "ls -p "+dir, disk).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("debugfs ls %s: %v: %s", dir, err, out)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		// /inode/mode/uid/gid/name/size/
		f := strings.Split(l, "/")
		if len(f) >= 7 && f[5] != "." && f[5] != ".." && f[5] != "" {
			names = append(names, f[5])
		}
	}
	return names, nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

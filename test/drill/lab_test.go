package drill_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/vincent-petithory/dataurl"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcd-rescue/etcd-rescue/image"
	"github.com/etcd-rescue/etcd-rescue/initrd"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/fixture"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/test/lab/masteros"
	"github.com/etcd-rescue/etcd-rescue/test/lab/netlab"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// The lab's artifacts, built once by TestMain.
var lab struct {
	root, tmp        string
	kernel, modules  string
	binary           string // etcd-rescue
	rescueDir        string // pxe files of the rescue image
	rescueCmdline    string
	masterOS         string // lab master OS initramfs
	accel            string
	buildTime        time.Duration
	rescueSize, osSz int64
}

const drillVersion = "drill"

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/drill:", err)
		code = 1
	}
	if lab.tmp != "" {
		os.RemoveAll(lab.tmp)
	}
	os.Exit(code)
}

// setup builds etcd-rescue, the rescue image (pxe files), etcd, the lab
// kubelet and the lab master OS. A missing prerequisite fails the package.
func setup(m *testing.M) (int, error) {
	if os.Geteuid() != 0 {
		return 1, fmt.Errorf("the drill creates a network namespace, a bridge and tap devices: run it as root")
	}
	start := time.Now()
	root, err := initrd.FindModuleRoot("")
	if err != nil {
		return 1, err
	}
	lab.root = root
	lab.kernel, lab.modules = os.Getenv("ETCD_RESCUE_KERNEL"), os.Getenv("ETCD_RESCUE_MODULES")
	if lab.kernel == "" {
		if lab.kernel, lab.modules, err = image.CachedKernel(root); err != nil {
			return 1, fmt.Errorf("%w (or set ETCD_RESCUE_KERNEL and ETCD_RESCUE_MODULES)", err)
		}
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4", "debugfs", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 1, fmt.Errorf("%s not found: run `make deps`", tool)
		}
	}
	if lab.tmp, err = os.MkdirTemp("", "etcd-rescue-drill-"); err != nil {
		return 1, err
	}
	build := func(out string, ldflags string, pkg string) error {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
		}
		return nil
	}
	lab.binary = filepath.Join(lab.tmp, "etcd-rescue")
	etcdBin := filepath.Join(lab.tmp, "etcd")
	kubelet := filepath.Join(lab.tmp, "kubelet")
	for _, b := range []struct{ out, ldflags, pkg string }{
		{lab.binary, "-s -w -buildid= -X github.com/etcd-rescue/etcd-rescue/internal/version.Version=" + drillVersion, "./cmd/etcd-rescue"},
		{etcdBin, "-s -w", "go.etcd.io/etcd/server/v3"},
		{kubelet, "-s -w", "./test/lab/kubelet"},
	} {
		if err := build(b.out, b.ldflags, b.pkg); err != nil {
			return 1, err
		}
	}
	lab.rescueDir = filepath.Join(lab.tmp, "rescue")
	var log strings.Builder
	rep, err := image.BuildRescue(context.Background(), image.Rescue{
		Initrd:  initrd.Config{Binary: lab.binary, ModulesDir: lab.modules, GoModDir: root, Log: &log},
		Kernel:  lab.kernel,
		Version: drillVersion,
		Format:  "pxe",
		Out:     lab.rescueDir,
	})
	if err != nil {
		return 1, fmt.Errorf("build rescue image: %w\n%s", err, log.String())
	}
	lab.rescueSize = rep.Initrd.Compressed
	cmdline, err := os.ReadFile(filepath.Join(lab.rescueDir, "cmdline"))
	if err != nil {
		return 1, err
	}
	lab.rescueCmdline = strings.TrimSpace(string(cmdline))
	lab.masterOS = filepath.Join(lab.tmp, "master-os.cpio")
	res, err := masteros.Build(masteros.Config{Kubelet: kubelet, Etcd: etcdBin, ModulesDir: lab.modules}, lab.masterOS)
	if err != nil {
		return 1, err
	}
	lab.osSz = res.Size
	lab.accel = qemu.DetectAccel(lab.kernel)
	lab.buildTime = time.Since(start)
	fmt.Printf("drill lab built in %s: rescue initramfs %s (zstd), lab master OS %s (modules %v, missing %v); QEMU accelerator %s\n",
		lab.buildTime.Round(time.Second), initrd.MiB(lab.rescueSize), initrd.MiB(lab.osSz), len(res.Modules.Load), res.Modules.Missing, lab.accel)
	return m.Run(), nil
}

// Lab network and names.
const (
	gateway   = "10.88.0.1/24"
	dnsIP     = "10.88.0.1"
	clusterNm = "drill"
	domain    = "drill.lab.example"
	peerPort  = 2380
)

// master is one lab master: its identity and its disk.
type master struct {
	idx     int // host number: IP 10.88.0.10+idx
	etcdN   int // which etcd-N DNS name it holds
	fx      fixture.Master
	tree    string // the root's files on the host (source of the disk)
	disk    string
	mac     string
	console *qemu.VM
}

func newMaster(idx, etcdN int) *master {
	node := fmt.Sprintf("master-%d.%s", idx, domain)
	return &master{
		idx: idx, etcdN: etcdN,
		mac: fmt.Sprintf("52:54:00:88:00:%02x", 0x10+idx),
		fx: fixture.Master{
			Profile: profile.OpenShift43, NodeName: node, MemberName: "etcd-member-" + node,
			IP: fmt.Sprintf("10.88.0.%d", 10+idx), DNSName: fmt.Sprintf("etcd-%d.%s", etcdN, domain), ClusterDomain: domain,
		},
	}
}

func (m *master) planMember() plan.Member {
	return plan.Member{Name: m.fx.MemberName, Host: m.fx.NodeName, IP: m.fx.IP, Prefix: 24, DNSName: m.fx.DNSName,
		PeerURL: fmt.Sprintf("https://%s:%d", m.fx.IP, peerPort), ClientURL: fmt.Sprintf("https://%s:2379", m.fx.IP)}
}

func (m *master) clientURL() string { return fmt.Sprintf("https://%s:2379", m.fx.IP) }

// writeDisk renders the master's root (fixture.Write, OpenShift 4.3, certs
// from the lab CA) and makes its ext4 disk. withCAKey false drops the CA
// key, as on a reinstalled master.
func (m *master) writeDisk(t *testing.T, p *etcdtest.PKI, dir string, withCAKey bool) {
	t.Helper()
	m.tree = filepath.Join(dir, fmt.Sprintf("root-%d", m.idx))
	if _, err := fixture.Write(m.tree, m.fx, p.CA); err != nil {
		t.Fatal(err)
	}
	if !withCAKey {
		prof, _ := profile.Get(profile.OpenShift43)
		if err := os.Remove(filepath.Join(m.tree, prof.CAKey)); err != nil {
			t.Fatal(err)
		}
	}
	m.disk = qemu.Ext4Image(t, filepath.Join(dir, fmt.Sprintf("master-%d.ext4", m.idx)), m.tree, "master", 512)
}

// vmOptions are what every lab VM gets: one CPU (TCG runs one thread per
// vCPU; the host has few), little memory, a virtio RNG, the lab network.
func vmOptions(t *testing.T, n *netlab.Net, name, mac string, timeout time.Duration) []qemu.Option {
	opts := []qemu.Option{qemu.WithName(name), qemu.WithAccel(lab.accel), qemu.WithCPUs(1), qemu.WithMemory(768),
		qemu.WithTimeout(timeout), qemu.WithArgs("-device", "virtio-rng-pci")}
	return append(opts, n.Tap(t, mac)...)
}

// bootOS boots the master into the lab master OS and waits for its disk.
func (m *master) bootOS(t *testing.T, n *netlab.Net, name string) {
	t.Helper()
	m.startOS(t, n, name)
	m.waitOS(t)
}

func (m *master) startOS(t *testing.T, n *netlab.Net, name string) {
	t.Helper()
	cmdline := fmt.Sprintf("console=ttyS0,115200 quiet panic=-1 lab.node=%s lab.ip=%s/24 lab.dns=%s", m.fx.NodeName, m.fx.IP, dnsIP)
	opts := append(vmOptions(t, n, name, m.mac, 40*time.Minute),
		qemu.WithKernel(lab.kernel, lab.masterOS, cmdline),
		qemu.WithDisk(m.disk, qemu.Disk{Serial: "master"}))
	m.console = qemu.Start(t, opts...)
}

func (m *master) waitOS(t *testing.T) {
	t.Helper()
	d, err := m.console.Expect("LAB-OS-READY", 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: lab master OS ready %s after QEMU start (%s)", m.console.Name, d.Round(10*time.Millisecond), lab.accel)
}

// bootRescue boots the rescue image (pxe) with an Ignition config and disks
// and waits for the role's marker; it returns the console after QEMU ended.
func bootRescue(t *testing.T, n *netlab.Net, name, mac, config string, disks ...string) *qemu.VM {
	t.Helper()
	opts := append(vmOptions(t, n, name, mac, 15*time.Minute),
		qemu.WithKernel(filepath.Join(lab.rescueDir, "vmlinuz"), filepath.Join(lab.rescueDir, "initrd.img"), lab.rescueCmdline),
		qemu.WithIgnition(config))
	for i, d := range disks {
		opts = append(opts, qemu.WithDisk(d, qemu.Disk{Serial: fmt.Sprintf("disk%d", i)}))
	}
	return qemu.Start(t, opts...)
}

// addIgnitionFile adds a file under /etc/etcd-rescue to a built config.
func addIgnitionFile(t *testing.T, cfg []byte, path string, data []byte, mode int) []byte {
	t.Helper()
	var c types.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	f := types.File{Node: types.Node{Path: path, Overwrite: ptr(true)}}
	f.Mode = ptr(mode)
	f.Contents.Source = ptr(dataurl.EncodeBytes(data))
	c.Storage.Files = append(c.Storage.Files, f)
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// client connects to lab endpoints through the lab namespace.
func client(t *testing.T, n *netlab.Net, p *etcdtest.PKI, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         p.ClientTLS(t),
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return n.Dial(ctx, "tcp", addr)
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// clusterState is what waitMembers saw.
type clusterState struct {
	ClusterID uint64
	Members   int
	Revision  int64
}

// waitMembers waits until the cluster has exactly want started voting
// members, each answering Status with the same leader.
func waitMembers(t *testing.T, cli *clientv3.Client, want int, timeout time.Duration) clusterState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		st, why := membersReady(cli, want)
		if why == "" {
			return st
		}
		if why != last {
			t.Logf("cluster not ready yet: %s", why)
			last = why
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not at %d started voting members within %s: %s", want, timeout, why)
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
		if s.Header.Revision > st.Revision {
			st.Revision = s.Header.Revision
		}
	}
	if leader == 0 {
		return st, "no leader"
	}
	return st, ""
}

// putKeys writes keys [from, to) with etcdtest.Key's values in
// transactions of 100 puts, a few at a time, and returns the last revision.
func putKeys(t *testing.T, cli *clientv3.Client, from, to int) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
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
					k, v := etcdtest.Key(i)
					ops = append(ops, clientv3.OpPut(k, v))
				}
				// A leader change under a loaded TCG host fails a request;
				// the same puts again are harmless.
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
				if resp.Header.Revision > r.rev {
					r.rev = resp.Header.Revision
				}
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
	var errs []string
	for w := 0; w < workers; w++ {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err.Error())
		}
		if r.rev > rev {
			rev = r.rev
		}
	}
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "; "))
	}
	return rev
}

// Package drill_test is the QEMU lab drill: three OpenShift 4.3 masters on
// a lab network form a TLS etcd cluster from their own static pod
// manifests, take a backup, lose two masters, and are recovered with the
// real rescue image (restore on the survivor, join on two new masters), then
// checked key by key. The only stand-in is the lab kubelet that starts etcd
// and the recovery service from what is on each master's disk.
//
// Run it with `make e2e` (as root: it creates a network namespace).
// DRILL_KEYS sets the number of keys (default 10,000), DRILL_JSON a file
// for the JSON report.
package drill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/roles"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
	"github.com/etcd-rescue/etcd-rescue/test/lab/netlab"
	"github.com/etcd-rescue/etcd-rescue/test/qemu"
)

// Report is the drill's result, printed as a table and as JSON.
type Report struct {
	Accel     string  `json:"accel"`
	Keys      int     `json:"keys"`
	LostKeys  int     `json:"lostKeys"`
	Phases    []Phase `json:"phases"`
	Recovery  float64 `json:"quorumLostToHealthySeconds"`
	Total     float64 `json:"totalSeconds"`
	BackupMiB float64 `json:"backupMiB"`
	// RescueInitrdMiB (zstd) and LabOSMiB (uncompressed) are the two
	// initramfs images; BuildSeconds is what building the lab took.
	RescueInitrdMiB float64 `json:"rescueInitrdMiB"`
	LabOSMiB        float64 `json:"labOSMiB"`
	BuildSeconds    float64 `json:"buildSeconds"`
	// OldClusterID and NewClusterID prove the restore made a new cluster.
	OldClusterID string `json:"oldClusterID"`
	NewClusterID string `json:"newClusterID"`
	// MaxRevisionBeforeLoss and RevisionAfter prove the revision moved on.
	MaxRevisionBeforeLoss int64  `json:"maxRevisionBeforeLoss"`
	RevisionAfter         int64  `json:"revisionAfter"`
	HashKV                uint32 `json:"hashKV"`
	KeysChecked           int    `json:"keysChecked"`
}

// Phase is one timed part of the drill.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "\n== etcd-rescue drill report (%s, %d keys) ==\n", r.Accel, r.Keys)
	for _, p := range r.Phases {
		fmt.Fprintf(w, "  %-58s %8.1fs\n", p.Name, p.Seconds)
	}
	fmt.Fprintf(w, "  %-58s %8.1fs\n", "quorum lost -> 3 healthy members", r.Recovery)
	fmt.Fprintf(w, "  %-58s %8.1fs\n", "total", r.Total)
	fmt.Fprintf(w, "  lab built in %.0fs: rescue initramfs %.1f MiB (zstd), lab master OS %.1f MiB\n", r.BuildSeconds, r.RescueInitrdMiB, r.LabOSMiB)
	fmt.Fprintf(w, "  backup %.1f MiB; cluster ID %s -> %s; revision %d before the loss, %d after\n",
		r.BackupMiB, r.OldClusterID, r.NewClusterID, r.MaxRevisionBeforeLoss, r.RevisionAfter)
	fmt.Fprintf(w, "  %d keys written before the backup checked on every member; %d written after it lost, as expected; HashKV %d on all members\n",
		r.KeysChecked, r.LostKeys, r.HashKV)
}

func drillKeys(t *testing.T) int {
	if s := os.Getenv("DRILL_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("DRILL_KEYS=%q: give a number of keys, at least 100", s)
		}
		return n
	}
	return 10000
}

// TestDrill runs the whole recovery on QEMU VMs.
func TestDrill(t *testing.T) {
	start := time.Now()
	keys := drillKeys(t)
	lost := max(keys/20, 10)
	rep := &Report{Accel: lab.accel, Keys: keys, LostKeys: lost, BuildSeconds: lab.buildTime.Seconds(),
		RescueInitrdMiB: float64(lab.rescueSize) / (1 << 20), LabOSMiB: float64(lab.osSz) / (1 << 20)}
	phase := func(name string, f func()) {
		t.Helper()
		s := time.Now()
		t.Logf("=== phase %s", name)
		f()
		d := time.Since(s)
		rep.Phases = append(rep.Phases, Phase{Name: name, Seconds: d.Seconds()})
		t.Logf("=== phase %s: done in %s", name, d.Round(100*time.Millisecond))
	}
	ctx := context.Background()
	dir := t.TempDir()
	n := netlab.New(t, gateway)
	dns := n.StartDNS(t)
	p := etcdtest.NewPKI(t)

	old := []*master{newMaster(0, 0), newMaster(1, 1), newMaster(2, 2)}
	var etcdNames []string
	for _, m := range old {
		dns.SetA(m.fx.DNSName, m.fx.IP)
		etcdNames = append(etcdNames, m.fx.DNSName)
	}
	dns.SetEtcdSRV(domain, peerPort, etcdNames...)

	var cli *clientv3.Client
	var oldState clusterState
	phase("boot 3 masters, form the TLS cluster", func() {
		for _, m := range old {
			m.writeDisk(t, p, dir, true)
		}
		// All three boot at once; then wait for each.
		for _, m := range old {
			m.startOS(t, n, fmt.Sprintf("master-%d", m.idx))
		}
		for _, m := range old {
			m.waitOS(t)
		}
		cli = client(t, n, p, old[0].clientURL(), old[1].clientURL(), old[2].clientURL())
		oldState = waitMembers(t, cli, 3, 5*time.Minute)
	})
	rep.OldClusterID = fmt.Sprintf("%x", oldState.ClusterID)

	phase(fmt.Sprintf("write %d keys", keys), func() { putKeys(t, cli, 0, keys) })

	backupTree := filepath.Join(dir, "backup-volume")
	var backupDisk string
	phase("etcd-rescue backup onto the backup volume", func() {
		out, err := n.Command(ctx, lab.binary, "backup", "--endpoints", old[0].clientURL(),
			"--cacert", p.CAFile, "--cert", p.ClientCert, "--key", p.ClientKey,
			"--root", old[0].tree, "--profile", profile.OpenShift43, "--out", filepath.Join(backupTree, "etcd")).CombinedOutput()
		t.Logf("etcd-rescue backup:\n%s", out)
		if err != nil {
			t.Fatalf("etcd-rescue backup: %v", err)
		}
		size := dirSize(t, backupTree)
		rep.BackupMiB = float64(size) / (1 << 20)
		backupDisk = qemu.Ext4Image(t, filepath.Join(dir, "backup.ext4"), backupTree, "backup", int(size>>20)*2+32)
	})

	phase(fmt.Sprintf("write %d keys after the backup (to be lost)", lost), func() {
		rep.MaxRevisionBeforeLoss = putKeys(t, cli, keys, keys+lost)
	})
	cli.Close()

	// The loss: two masters are powered off hard; the survivor, without
	// quorum, is reset into the rescue image.
	lossStart := time.Now()
	phase("lose quorum (kill 2 masters, reset the survivor)", func() {
		for _, m := range old {
			m.console.Kill()
		}
	})

	survivor := old[0]
	m3, m4 := newMaster(3, 1), newMaster(4, 2)
	pl := &plan.Plan{
		Version: plan.Version, Cluster: plan.Cluster{Name: clusterNm, Domain: domain}, Profile: profile.OpenShift43,
		Survivor: survivor.fx.MemberName,
		Members:  []plan.Member{survivor.planMember(), m3.planMember(), m4.planMember()},
		Signer:   plan.Signer{Address: fmt.Sprintf("https://%s:%d", survivor.fx.IP, 9943)},
	}
	planBytes, err := pl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Parse(planBytes); err != nil {
		t.Fatalf("drill plan: %v", err)
	}
	tokStore, tokFile := filepath.Join(dir, "tokens.json"), filepath.Join(dir, "tokens.txt")
	if _, err := signer.GenerateTokens(pl, tokStore, tokFile, 2*time.Hour); err != nil {
		t.Fatal(err)
	}

	phase("restore the survivor (rescue image)", func() {
		cfg, err := ignition.Build(ignition.Options{Plan: planBytes, Role: ignition.Role{Role: ignition.RoleRestore, After: ignition.AfterReboot}})
		if err != nil {
			t.Fatal(err)
		}
		store, err := os.ReadFile(tokStore)
		if err != nil {
			t.Fatal(err)
		}
		cfg = addIgnitionFile(t, cfg, roles.SignerTokensFile, store, 0o600)
		vm := bootRescue(t, n, "restore", survivor.mac, writeFile(t, dir, "restore.ign", cfg), survivor.disk, backupDisk)
		if _, err := vm.Expect("RESTORE-OK", 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := vm.Wait(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
	})

	var cli0 *clientv3.Client
	phase("survivor boots its OS: one-member cluster", func() {
		survivor.bootOS(t, n, "master-0-restored")
		cli0 = client(t, n, p, survivor.clientURL())
		st := waitMembers(t, cli0, 1, 5*time.Minute)
		rep.NewClusterID = fmt.Sprintf("%x", st.ClusterID)
		if st.ClusterID == oldState.ClusterID {
			t.Fatalf("the restored cluster kept the old cluster ID %x", st.ClusterID)
		}
	})

	for i, nm := range []*master{m3, m4} {
		phase(fmt.Sprintf("join %s (rescue image, then its OS)", nm.fx.NodeName), func() {
			// The operator points etcd-N at the new master.
			dns.SetA(nm.fx.DNSName, nm.fx.IP)
			nm.writeDisk(t, p, dir, false)
			tok, err := signer.ReadToken(tokFile, nm.fx.MemberName)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := ignition.Build(ignition.Options{Plan: planBytes, Token: []byte(tok),
				Role: ignition.Role{Role: ignition.RoleJoin, Member: nm.fx.MemberName, After: ignition.AfterReboot}})
			if err != nil {
				t.Fatal(err)
			}
			vm := bootRescue(t, n, fmt.Sprintf("join-%d", nm.idx), nm.mac, writeFile(t, dir, fmt.Sprintf("join-%d.ign", nm.idx), cfg), nm.disk)
			if _, err := vm.Expect("JOIN-OK", 10*time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := vm.Wait(2 * time.Minute); err != nil {
				t.Fatal(err)
			}
			nm.bootOS(t, n, fmt.Sprintf("master-%d", nm.idx))
			waitMembers(t, cli0, 2+i, 10*time.Minute)
		})
	}
	rep.Recovery = time.Since(lossStart).Seconds()

	phase("verify", func() {
		newMasters := []*master{survivor, m3, m4}
		all := client(t, n, p, survivor.clientURL(), m3.clientURL(), m4.clientURL())
		st := waitMembers(t, all, 3, 2*time.Minute)
		vctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		// A write through the new cluster, then HashKV at one revision.
		resp, err := all.Put(vctx, "/registry/drill/verified", time.Now().UTC().Format(time.RFC3339))
		if err != nil {
			t.Fatal(err)
		}
		rev := resp.Header.Revision
		rep.RevisionAfter = rev
		if rev <= rep.MaxRevisionBeforeLoss {
			t.Errorf("revision %d after the recovery is not above the old cluster's %d", rev, rep.MaxRevisionBeforeLoss)
		}
		var hashes []string
		for i, m := range newMasters {
			h, err := waitHashKV(vctx, all, m.clientURL(), rev)
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, fmt.Sprintf("%s=%d", m.fx.NodeName, h))
			if i == 0 {
				rep.HashKV = h
			} else if h != rep.HashKV {
				t.Errorf("HashKV differs: %s", strings.Join(hashes, ", "))
			}
			one := client(t, n, p, m.clientURL())
			etcdtest.CheckKeys(t, one, 0, keys)
			g, err := one.Get(vctx, "/registry/test/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			if g.Count != int64(keys) {
				t.Errorf("%s holds %d test keys; want exactly the %d written before the backup", m.fx.NodeName, g.Count, keys)
			}
		}
		rep.KeysChecked = keys
		t.Logf("HashKV at revision %d: %s; members %d", rev, strings.Join(hashes, ", "), st.Members)
		// The recovery service stopped at full membership and removed itself.
		if _, err := survivor.console.Expect("SIGNER-STOPPED", 2*time.Minute); err != nil {
			t.Error(err)
		}
		if _, err := survivor.console.Expect("signer: removed", time.Minute); err != nil {
			t.Error(err)
		}
		if c, err := n.Dial(vctx, "tcp", strings.TrimPrefix(pl.Signer.Address, "https://")); err == nil {
			c.Close()
			t.Errorf("the signer still listens on %s", pl.Signer.Address)
		}
	})
	phase("an old master comes back while DNS still names it", func() {
		// Old data is never reused: the old master's etcd is refused by
		// the new members and the new cluster does not notice.
		back := old[1]
		dns.SetA(back.fx.DNSName, back.fx.IP)
		defer dns.SetA(back.fx.DNSName, m3.fx.IP)
		back.bootOS(t, n, "old-master-1")
		if _, err := back.console.Expect("cluster ID mismatch", 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		all := client(t, n, p, survivor.clientURL(), m3.clientURL(), m4.clientURL())
		st := waitMembers(t, all, 3, time.Minute)
		if fmt.Sprintf("%x", st.ClusterID) != rep.NewClusterID {
			t.Errorf("cluster ID %x after the old master came back, was %s", st.ClusterID, rep.NewClusterID)
		}
		vctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		for _, m := range []*master{survivor, m3, m4} {
			h, err := waitHashKV(vctx, all, m.clientURL(), rep.RevisionAfter)
			if err != nil {
				t.Fatal(err)
			}
			if h != rep.HashKV {
				t.Errorf("%s: HashKV at revision %d is %d after the old master came back, was %d", m.fx.NodeName, rep.RevisionAfter, h, rep.HashKV)
			}
		}
		back.console.Kill()
	})
	phase("survivor's disk after power-off: old data kept, signer removed", func() {
		for _, m := range []*master{survivor, m3, m4} {
			m.console.Kill()
		}
		// The VM was powered off hard: replay the ext4 journal first, as
		// the next mount would (debugfs reads without it).
		if out, err := exec.Command("e2fsck", "-fy", survivor.disk).CombinedOutput(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
				t.Fatalf("e2fsck of the survivor's disk: %v: %s", err, out)
			}
		}
		runs := debugfsList(t, survivor.disk, "/var/lib/etcd-rescue/backup")
		if len(runs) != 1 {
			t.Fatalf("restore runs kept on the survivor's disk: %v, want one", runs)
		}
		kept := "/var/lib/etcd-rescue/backup/" + runs[0] + "/var/lib/etcd/member/snap"
		if files := debugfsList(t, survivor.disk, kept); !slices.Contains(files, "db") {
			t.Errorf("the old data dir is not kept in %s: %v", kept, files)
		}
		for _, gone := range []string{signer.UnitPath, signer.UnitWantsPath} {
			if out, _ := exec.Command("debugfs", "-R", "stat /"+gone, survivor.disk).CombinedOutput(); !strings.Contains(string(out), "not found") {
				t.Errorf("/%s is still on the survivor's disk", gone)
			}
		}
		t.Logf("old data dir kept in %s", kept)
	})
	rep.Total = time.Since(start).Seconds()
	var b bytes.Buffer
	rep.print(&b)
	t.Log(b.String())
	fmt.Print(b.String())
	if p := os.Getenv("DRILL_JSON"); p != "" {
		j, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(p, append(j, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
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
func debugfsList(t *testing.T, disk, dir string) []string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "ls -p "+dir, disk).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs ls %s: %v: %s", dir, err, out)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		// /inode/mode/uid/gid/name/size/
		f := strings.Split(l, "/")
		if len(f) >= 7 && f[5] != "." && f[5] != ".." && f[5] != "" {
			names = append(names, f[5])
		}
	}
	return names
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

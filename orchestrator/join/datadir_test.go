package join

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/testport"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// kubeadmCustomDataDir is a kubeadm etcd manifest for etcd.local.dataDir
// /var/lib/etcd-data, with --data-dir given twice (etcd takes the last).
const kubeadmCustomDataDir = `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.5.12-0
    command:
    - etcd
    - --name=old
    - --data-dir=/var/lib/etcd
    - --data-dir=/var/lib/etcd-data
    - --initial-cluster=old=https://192.0.2.9:2380
    - --initial-cluster-state=new
    volumeMounts:
    - mountPath: /var/lib/etcd-data
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  volumes:
  - hostPath:
      path: /var/lib/etcd-data
      type: DirectoryOrCreate
    name: etcd-data
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
`

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func kubeadmOptions(t *testing.T, root string, out *bytes.Buffer) Options {
	t.Helper()
	prof, err := profile.Get(profile.Kubeadm)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Root: root, Profile: prof, Out: out,
		Member: plan.Member{Name: "master-1", PeerURL: "https://192.0.2.2:2380"}, Endpoints: []string{"https://192.0.2.1:2379"}}
}

// TestJoinUsesTheManifestsDataDir: on a re-used kubeadm master whose
// manifest gives etcd /var/lib/etcd-data, the join keeps that folder's
// contents aside (not the profile's /var/lib/etcd, whose decoy stays byte
// for byte), a run resumed after a kill at keep-old-state (the manifest
// then moved aside) takes the data dir from its journal, and the manifest
// it writes still points etcd at /var/lib/etcd-data.
func TestJoinUsesTheManifestsDataDir(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "etc/kubernetes/manifests/etcd.yaml", kubeadmCustomDataDir)
	writeFile(t, root, "var/lib/etcd-data/member/snap/db", "old cluster")
	writeFile(t, root, "var/lib/etcd/decoy", "not etcd's")
	oldData := disaster.TreeHash(t, filepath.Join(root, "var/lib/etcd-data/member"))
	decoy := disaster.Snap(t, filepath.Join(root, "var/lib/etcd"))

	var out bytes.Buffer
	o := kubeadmOptions(t, root, &out)
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	o.AfterStep = func(name string) {
		if name == "keep-old-state" {
			kill()
		}
	}
	if err := Run(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("killed run: err = %v\n%s", err, out.String())
	}
	mustContain(t, "killed run", out.String(), "data dir: /var/lib/etcd-data (the manifest's --data-dir /var/lib/etcd-data)", "keep-old-state: started")
	kept, _ := filepath.Glob(filepath.Join(root, "var/lib/etcd-rescue/backup/*/var/lib/etcd-data/member"))
	if len(kept) != 1 || disaster.TreeHash(t, kept[0]) != oldData {
		t.Fatalf("old data not kept from /var/lib/etcd-data: %v\n%s", kept, out.String())
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "var/lib/etcd-data")); len(ents) != 0 {
		t.Fatalf("/var/lib/etcd-data still holds %v", ents)
	}
	if ch := decoy.Changes(t); len(ch) > 0 {
		t.Fatalf("the profile's default data dir was touched: %v", ch)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old manifest was not moved aside: %v", err)
	}

	// Resumed: the manifest is gone, the journal says where the data dir is.
	out.Reset()
	o.AfterStep = nil
	jn, err := prepare(o)
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, out.String())
	}
	defer jn.close()
	mustContain(t, "resumed run", out.String(), "data dir: /var/lib/etcd-data (recorded by this run in ")
	if jn.prof.DataDir != "var/lib/etcd-data" {
		t.Fatalf("resumed run's data dir = %q", jn.prof.DataDir)
	}
	// write-config on its own (member-add would record the initial cluster).
	jn.j.Notes["initialCluster"] = "master-0=https://192.0.2.1:2380,master-1=https://192.0.2.2:2380"
	if err := jn.configStep().Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Load(filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rel, why, err := m.DataDirOnHost(root, "", "var/lib/etcd")
	if err != nil || rel != "var/lib/etcd-data" || !strings.Contains(why, "--data-dir") {
		t.Fatalf("written manifest's data dir = %q (%s), %v", rel, why, err)
	}
	if st, err := os.Stat(filepath.Join(root, "var/lib/etcd-data")); err != nil || !st.IsDir() {
		t.Fatalf("data dir not created: %v", err)
	}
	if ch := decoy.Changes(t); len(ch) > 0 {
		t.Fatalf("the profile's default data dir was touched: %v", ch)
	}
}

// TestJoinDataDirFromJournalIsChecked: a data dir recorded in the journal
// that could leave the root is refused.
func TestJoinDataDirFromJournalIsChecked(t *testing.T) {
	root := t.TempDir()
	var out bytes.Buffer
	o := kubeadmOptions(t, root, &out)
	jn, err := prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := jn.j.Note(dataDirNote, "../../etc"); err != nil {
		t.Fatal(err)
	}
	jn.close()
	if _, err := prepare(o); err == nil || !strings.Contains(err.Error(), "data dir") {
		t.Fatalf("err = %v, want the journal's data dir refused", err)
	}
}

// TestJoinOnAFreshMasterKeepsTheProfilesDataDir: with no manifest, the
// profile's default is used and the output says why.
func TestJoinOnAFreshMasterKeepsTheProfilesDataDir(t *testing.T) {
	var out bytes.Buffer
	jn, err := prepare(kubeadmOptions(t, t.TempDir(), &out))
	if err != nil {
		t.Fatal(err)
	}
	defer jn.close()
	mustContain(t, "fresh master", out.String(), "data dir: /var/lib/etcd (the profile's; the master has no etcd manifest)")
	if jn.prof.DataDir != "var/lib/etcd" {
		t.Fatalf("data dir = %q", jn.prof.DataDir)
	}
}

// TestJoinRefusesABrokenManifestBeforeAnyChange: an existing manifest that
// cannot be read as an etcd Pod is refused, dry run or not, with the root
// byte for byte unchanged.
func TestJoinRefusesABrokenManifestBeforeAnyChange(t *testing.T) {
	const rel = "etc/kubernetes/manifests/etcd.yaml"
	cases := map[string]func(t *testing.T, root string){
		"not YAML": func(t *testing.T, root string) { writeFile(t, root, rel, "{{{ not: [yaml") },
		"not a Pod": func(t *testing.T, root string) {
			writeFile(t, root, rel, "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n")
		},
		"empty": func(t *testing.T, root string) { writeFile(t, root, rel, "") },
		"a folder": func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		"data dir on no hostPath": func(t *testing.T, root string) {
			writeFile(t, root, rel, strings.Replace(kubeadmCustomDataDir, "- mountPath: /var/lib/etcd-data", "- mountPath: /var/lib/elsewhere", 1))
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			setup(t, root)
			writeFile(t, root, "var/lib/etcd/member/snap/db", "old cluster")
			writeFile(t, root, "var/lib/etcd-data/member/snap/db", "old cluster")
			before := disaster.Snap(t, root)
			for _, dry := range []bool{true, false} {
				var out bytes.Buffer
				o := kubeadmOptions(t, root, &out)
				o.DryRun = dry
				err := Run(context.Background(), o)
				if err == nil || !strings.Contains(err.Error(), "etcd manifest") || !strings.Contains(out.String(), "JOIN-FAILED") {
					t.Fatalf("dry run %v: err = %v, want the manifest refused\n%s", dry, err, out.String())
				}
			}
			if ch := before.Changes(t); len(ch) > 0 {
				t.Fatalf("a refused join changed the root: %v", ch)
			}
		})
	}
}

// TestJoinRefusesADataDirEtcdRunsOn: an old member still runs (a real etcd
// on the data dir the manifest names, as a kubelet would have restarted
// it). The join, and its dry run, must refuse before anything changes and
// say how to stop it; the etcd keeps serving.
func TestJoinRefusesADataDirEtcdRunsOn(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "etc/kubernetes/manifests/etcd.yaml", kubeadmCustomDataDir)
	dataDir := filepath.Join(root, "var/lib/etcd-data")
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t)), fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t))
	p := etcdtest.StartProcess(t, []string{"etcd", "--name=old", "--data-dir=" + dataDir,
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer, "--initial-cluster=old=" + peer}, os.Environ())
	deadline := time.Now().Add(60 * time.Second)
	for {
		busy, _ := etcddata.InUse(etcddata.DBPath(dataDir))
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not lock %s within 60s:\n%s", dataDir, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	manifests := disaster.Snap(t, filepath.Join(root, "etc"))
	for _, dry := range []bool{true, false} {
		var out bytes.Buffer
		o := kubeadmOptions(t, root, &out)
		o.DryRun = dry
		err := Run(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "etcd is running on "+dataDir) || !strings.Contains(err.Error(), "stop it first") {
			t.Fatalf("dry run %v: err = %v, want the running etcd refused\n%s", dry, err, out.String())
		}
	}
	if ch := manifests.Changes(t); len(ch) > 0 {
		t.Fatalf("a refused join changed the master's files: %v", ch)
	}
	if _, err := os.Lstat(filepath.Join(root, journal.Dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused join began a journal: %v", err)
	}
	if busy, _ := etcddata.InUse(etcddata.DBPath(dataDir)); !busy {
		t.Fatalf("the old etcd stopped:\n%s", p.Output())
	}
}

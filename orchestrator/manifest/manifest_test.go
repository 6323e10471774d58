package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const scriptPod = `apiVersion: v1
kind: Pod
metadata:
  name: etcd-member
  namespace: openshift-etcd
spec:
  containers:
  - name: etcd-member
    image: "quay.io/etcd@sha256:00"
    command:
    - /bin/sh
    - -c
    - |
      #!/bin/sh
      set -euo pipefail
      # the environment the discovery init container wrote
      source /run/etcd/environment
      set -a
      source /etc/etcd/etcd.conf
      set +a
      exec etcd \
        --discovery-srv example.com \
        --initial-advertise-peer-urls=https://${ETCD_IPV4_ADDRESS}:2380 \
        --cert-file=/etc/ssl/etcd/system:etcd-server:${ETCD_DNS_NAME}.crt \
        --listen-client-urls="https://0.0.0.0:2379"
    securityContext:
      priviledged: true   # a typo the kubelet tolerates
    volumeMounts:
    - {name: certs, mountPath: /etc/ssl/etcd/}
    - {name: conf, mountPath: /etc/etcd/}
    - {name: data, mountPath: /var/lib/etcd/}
    env:
    - name: ETCD_DATA_DIR
      value: "/var/lib/etcd"
    - name: ETCD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
  volumes:
  - {name: certs, hostPath: {path: /etc/kubernetes/static-pod-resources/etcd-member}}
  - {name: conf, hostPath: {path: /etc/etcd}}
  - {name: data, hostPath: {path: /var/lib/etcd}}
`

func TestInvocationOfAStartScript(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/etcd"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/etcd/etcd.conf"), []byte("# comment\nETCD_HEARTBEAT_INTERVAL=100\n\n#[recover]\nETCD_INITIAL_CLUSTER=n=https://a:2380\n"), 0o644)
	m, err := Parse([]byte(scriptPod))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := m.Invocation(Runtime{Root: root, NodeName: "master-0",
		Files: map[string]string{"/run/etcd/environment": "ETCD_IPV4_ADDRESS=10.0.0.10\nETCD_DNS_NAME=etcd-0.example.com\n"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"etcd", "--discovery-srv", "example.com", "--initial-advertise-peer-urls=https://10.0.0.10:2380",
		"--cert-file=/etc/ssl/etcd/system:etcd-server:etcd-0.example.com.crt", "--listen-client-urls=https://0.0.0.0:2379"}
	if strings.Join(inv.Argv, " ") != strings.Join(want, " ") {
		t.Fatalf("argv\n got %q\nwant %q", inv.Argv, want)
	}
	env := strings.Join(inv.Env, " ")
	for _, w := range []string{"ETCD_NAME=etcd-member-master-0", "ETCD_DATA_DIR=/var/lib/etcd", "ETCD_HEARTBEAT_INTERVAL=100", "ETCD_INITIAL_CLUSTER=n=https://a:2380"} {
		if !strings.Contains(env, w) {
			t.Errorf("env lacks %s: %v", w, inv.Env)
		}
	}
	if strings.Contains(env, "ETCD_IPV4_ADDRESS") {
		t.Error("a variable sourced without set -a must not be exported")
	}
	argv, _ := inv.OnHost(root)
	if want := "--cert-file=" + filepath.Join(root, "etc/kubernetes/static-pod-resources/etcd-member/system:etcd-server:etcd-0.example.com.crt"); argv[4] != want {
		t.Errorf("host path %s, want %s", argv[4], want)
	}
	if f := inv.Flags(); f["data-dir"] != "/var/lib/etcd" || f["discovery-srv"] != "example.com" {
		t.Errorf("flags %v", f)
	}
}

func TestInvocationRefusesWhatItCannotKnow(t *testing.T) {
	for name, script := range map[string]string{
		"test command":      "[ -e /x ] || exit 1\nexec etcd",
		"pipe":              "echo hi | tee /tmp/x\nexec etcd",
		"unset variable":    "set -u\nexec etcd --name=${NOPE}",
		"parameter default": "exec etcd --name=${NAME:-x}",
		"never starts etcd": "echo hello",
		"unknown command":   "mkdir -p /var/lib/etcd\nexec etcd",
	} {
		t.Run(name, func(t *testing.T) {
			pod := strings.Replace(scriptPod, `      #!/bin/sh
      set -euo pipefail`, "      "+strings.ReplaceAll(script, "\n", "\n      ")+"\n      exit 0", 1)
			pod = pod[:strings.Index(pod, "      exit 0")] + pod[strings.Index(pod, "    securityContext"):]
			m, err := Parse([]byte(pod))
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Invocation(Runtime{NodeName: "n"})
			if err == nil {
				t.Fatalf("script %q was accepted", script)
			}
			t.Log(err)
		})
	}
}

func TestEditsKeepEverythingElse(t *testing.T) {
	m, err := Parse([]byte(scriptPod))
	if err != nil {
		t.Fatal(err)
	}
	removed, err := m.RemoveScriptFlag("discovery-srv")
	if err != nil || !removed {
		t.Fatalf("RemoveScriptFlag: %v %v", removed, err)
	}
	if err := m.SetEnv("ETCD_INITIAL_CLUSTER", "a=https://10.0.0.10:2380"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetEnv("ETCD_NAME", "a"); err != nil {
		t.Fatal(err)
	}
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, keep := range []string{"priviledged: true", "# a typo the kubelet tolerates", "# the environment the discovery init container wrote", "exec etcd \\"} {
		if !strings.Contains(out, keep) {
			t.Errorf("the edit lost %q:\n%s", keep, out)
		}
	}
	if strings.Contains(out, "discovery-srv") || strings.Contains(out, "fieldPath") || !strings.Contains(out, `value: "a=https://10.0.0.10:2380"`) {
		t.Errorf("edits not applied:\n%s", out)
	}
	if m.SetFlag("name", "x") == nil {
		t.Error("SetFlag on a start script must refuse and point to the environment")
	}
}

func TestSetFlagOnACommandList(t *testing.T) {
	m, err := Parse([]byte(`apiVersion: v1
kind: Pod
metadata: {name: etcd, namespace: kube-system}
spec:
  containers:
  - name: etcd
    command: [etcd, --name=old, --initial-cluster-state, existing, --data-dir=/var/lib/etcd]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"name", "new"}, {"initial-cluster-state", "new"}, {"initial-cluster", "new=https://h:2380"}} {
		if err := m.SetFlag(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(m.EtcdContainer().Command, " ")
	if got != "etcd --name=new --initial-cluster-state new --data-dir=/var/lib/etcd --initial-cluster=new=https://h:2380" {
		t.Fatalf("command: %s", got)
	}
	if m.Flag("initial-cluster-state") != "new" || m.Flag("data-dir") != "/var/lib/etcd" {
		t.Fatal("Flag reads the wrong values")
	}
}

// The recover block is read back as the start script reads it: the shell
// sources etcd.conf with set -a, so etcd sees the variables.
func TestRecoverBlockReachesEtcdThroughTheStartScript(t *testing.T) {
	root := t.TempDir()
	conf := filepath.Join(root, "etc/etcd/etcd.conf")
	os.MkdirAll(filepath.Dir(conf), 0o755)
	base := "ETCD_HEARTBEAT_INTERVAL=100\n\n#[recover]\nETCD_NAME=old\nETCD_INITIAL_CLUSTER=old=https://b:2380\n"
	m, err := Parse([]byte(strings.Replace(scriptPod, "--discovery-srv example.com \\", "--discovery-srv example.com \\\n        --name=stale \\", 1)))
	if err != nil {
		t.Fatal(err)
	}
	c := Member{Name: "etcd-member-master-0", InitialCluster: "etcd-member-master-0=https://10.0.0.10:2380", State: "existing", PeerURL: "https://10.0.0.10:2380"}
	if err := m.SetMember(c); err != nil {
		t.Fatal(err)
	}
	env, err := m.WithRecoverBlock([]byte(base), c)
	if err != nil {
		t.Fatal(err)
	}
	// The script passes --name and --initial-advertise-peer-urls itself:
	// the block leaves their variables out.
	want := "ETCD_HEARTBEAT_INTERVAL=100\n\n#[recover]\n" +
		"ETCD_INITIAL_CLUSTER=\"etcd-member-master-0=https://10.0.0.10:2380\"\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"
	if string(env) != want {
		t.Fatalf("etcd.conf\n got %q\nwant %q ", env, want)
	}
	if got, ok := ReadRecoverBlock(env); !ok || got.Name != "" || got.InitialCluster != c.InitialCluster || got.State != c.State || got.PeerURL != "" {
		t.Fatalf("read back %+v %v", got, ok)
	}
	os.WriteFile(conf, env, 0o644)
	inv, err := m.Invocation(Runtime{Root: root, NodeName: "master-0",
		Files: map[string]string{"/run/etcd/environment": "ETCD_IPV4_ADDRESS=10.0.0.10\nETCD_DNS_NAME=etcd-0.example.com\n"}})
	if err != nil {
		t.Fatal(err)
	}
	envs := strings.Join(inv.Env, " ")
	for _, w := range []string{"ETCD_INITIAL_CLUSTER=etcd-member-master-0=https://10.0.0.10:2380", "ETCD_INITIAL_CLUSTER_STATE=existing"} {
		if !strings.Contains(envs, w) {
			t.Errorf("etcd's environment lacks %s: %v", w, inv.Env)
		}
	}
	if f := inv.Flags(); f["name"] != c.Name {
		t.Errorf("the script's own --name is %q, want %q", f["name"], c.Name)
	}
	if _, err := m.WithRecoverBlock(nil, Member{InitialCluster: "a=$(reboot)"}); err == nil {
		t.Error("a value the shell would expand was written")
	}
}

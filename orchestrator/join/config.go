package join

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// MemberConfig is what the written etcd configuration starts etcd with.
type MemberConfig struct {
	Name           string
	InitialCluster string
	State          string
	PeerURL        string
}

// recoverMarker starts the block OpenShift's etcd-member-recover.sh appends
// to /etc/etcd/etcd.conf; etcd reads the ETCD_* variables it sets.
const recoverMarker = "#[recover]"

// renderEnvFile returns base without any earlier recover block, plus a
// recover block for c, as the OpenShift 4.3 recovery script writes it.
func renderEnvFile(base string, c MemberConfig) string {
	if i := strings.Index(base, recoverMarker); i >= 0 {
		base = base[:i]
	}
	base = strings.TrimRight(base, "\n")
	return fmt.Sprintf("%s\n\n%s\nETCD_NAME=%q\nETCD_INITIAL_CLUSTER=%q\nETCD_INITIAL_ADVERTISE_PEER_URLS=%q\nETCD_INITIAL_CLUSTER_STATE=%q\n",
		base, recoverMarker, c.Name, c.InitialCluster, c.PeerURL, c.State)
}

// patchOpenShiftManifest drops etcd's --discovery-srv flag, so that etcd
// takes its initial cluster from the recover block (what the OpenShift 4.3
// recovery script's patch_manifest does). The discovery init container keeps
// its own flag: it still provides ETCD_DNS_NAME and the address.
func patchOpenShiftManifest(base string) string {
	var out []string
	for _, l := range strings.SplitAfter(base, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "--discovery-srv") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// setFlags sets etcd flags in a manifest whose command lists them one per
// item ("- --name=value"), replacing existing items and adding missing ones
// after the last flag item.
func setFlags(base string, flags [][2]string) (string, error) {
	lines := strings.SplitAfter(base, "\n")
	for _, f := range flags {
		prefix := "- --" + f[0] + "="
		done := false
		last := -1
		indent := ""
		for i, l := range lines {
			t := strings.TrimSpace(l)
			if strings.HasPrefix(t, "- --") {
				last = i
				indent = l[:len(l)-len(strings.TrimLeft(l, " "))]
			}
			if strings.HasPrefix(t, prefix) {
				lines[i] = l[:len(l)-len(strings.TrimLeft(l, " "))] + prefix + f[1] + "\n"
				done = true
			}
		}
		if done {
			continue
		}
		if last < 0 {
			return "", fmt.Errorf("the etcd manifest lists no --flag items to edit; move it aside and pass --image to write a new one")
		}
		ins := indent + prefix + f[1] + "\n"
		lines = append(lines[:last+1], append([]string{ins}, lines[last+1:]...)...)
	}
	return strings.Join(lines, ""), nil
}

// freshSpec is what a new etcd manifest needs when the master has none.
type freshSpec struct {
	Prof      *profile.Profile
	Image     string
	Config    MemberConfig
	ClientURL string
	// Cert paths on the host, absolute.
	ServerCert, ServerKey, PeerCert, PeerKey, CACert string
}

// renderFresh writes a plain etcd static pod: etcd with every flag, the
// host's cert dir and data dir mounted at the same paths.
func renderFresh(s freshSpec) (string, error) {
	if s.Image == "" {
		return "", errors.New("this master has no etcd manifest to adapt: pass --image with the cluster's etcd image to write a new one")
	}
	peer, err := url.Parse(s.Config.PeerURL)
	if err != nil {
		return "", err
	}
	client, err := url.Parse(s.ClientURL)
	if err != nil {
		return "", err
	}
	name, ns := "etcd", "kube-system"
	if s.Prof.Name == profile.OpenShift43 {
		name, ns = "etcd-member", "openshift-etcd"
	}
	certDir := "/" + s.Prof.CertDir
	dataDir := "/" + s.Prof.DataDir
	flags := []string{
		"--name=" + s.Config.Name,
		"--data-dir=" + dataDir,
		"--initial-cluster=" + s.Config.InitialCluster,
		"--initial-cluster-state=" + s.Config.State,
		"--initial-advertise-peer-urls=" + s.Config.PeerURL,
		"--listen-peer-urls=https://0.0.0.0:" + peer.Port(),
		"--advertise-client-urls=" + s.ClientURL,
		"--listen-client-urls=https://0.0.0.0:" + client.Port(),
		"--cert-file=" + s.ServerCert,
		"--key-file=" + s.ServerKey,
		"--trusted-ca-file=" + s.CACert,
		"--client-cert-auth=true",
		"--peer-cert-file=" + s.PeerCert,
		"--peer-key-file=" + s.PeerKey,
		"--peer-trusted-ca-file=" + s.CACert,
		"--peer-client-cert-auth=true",
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by etcd-rescue join.
apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels:
    k8s-app: etcd
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  restartPolicy: Always
  tolerations:
  - operator: "Exists"
  containers:
  - name: %s
    image: %q
    command:
    - etcd
`, name, ns, name, s.Image)
	for _, f := range flags {
		fmt.Fprintf(&b, "    - %s\n", f)
	}
	fmt.Fprintf(&b, `    volumeMounts:
    - name: certs
      mountPath: %s
    - name: data-dir
      mountPath: %s
  volumes:
  - name: certs
    hostPath:
      path: %s
  - name: data-dir
    hostPath:
      path: %s
      type: DirectoryOrCreate
`, certDir, dataDir, certDir, dataDir)
	return b.String(), nil
}

// ReadMemberConfig reads back the member configuration join wrote under
// root: the recover block of the environment file when the profile has one
// and it holds the block, else the manifest's flags.
func ReadMemberConfig(root string, prof *profile.Profile) (MemberConfig, error) {
	if prof.EnvFile != "" {
		if c, ok, err := readRecoverBlock(filepath.Join(root, prof.EnvFile)); err != nil || ok {
			return c, err
		}
	}
	b, err := os.ReadFile(filepath.Join(root, prof.Manifest))
	if err != nil {
		return MemberConfig{}, err
	}
	var c MemberConfig
	for _, l := range strings.Split(string(b), "\n") {
		t := strings.TrimPrefix(strings.TrimSpace(l), "- ")
		for flag, dst := range map[string]*string{"--name=": &c.Name, "--initial-cluster=": &c.InitialCluster,
			"--initial-cluster-state=": &c.State, "--initial-advertise-peer-urls=": &c.PeerURL} {
			if v, ok := strings.CutPrefix(t, flag); ok {
				*dst = v
			}
		}
	}
	if c.Name == "" || c.InitialCluster == "" {
		return c, fmt.Errorf("%s sets no --name and --initial-cluster", prof.Manifest)
	}
	return c, nil
}

func readRecoverBlock(path string) (MemberConfig, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return MemberConfig{}, false, nil
	}
	if err != nil {
		return MemberConfig{}, false, err
	}
	defer f.Close()
	var c MemberConfig
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == recoverMarker {
			in = true
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !in || !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		switch k {
		case "ETCD_NAME":
			c.Name = v
		case "ETCD_INITIAL_CLUSTER":
			c.InitialCluster = v
		case "ETCD_INITIAL_CLUSTER_STATE":
			c.State = v
		case "ETCD_INITIAL_ADVERTISE_PEER_URLS":
			c.PeerURL = v
		}
	}
	return c, in, sc.Err()
}

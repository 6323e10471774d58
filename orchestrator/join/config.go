package join

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
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

// recoverVars are the variables of the recover block and their etcd flags.
var recoverVars = [][2]string{
	{"ETCD_NAME", "name"},
	{"ETCD_INITIAL_CLUSTER", "initial-cluster"},
	{"ETCD_INITIAL_ADVERTISE_PEER_URLS", "initial-advertise-peer-urls"},
	{"ETCD_INITIAL_CLUSTER_STATE", "initial-cluster-state"},
}

func (c MemberConfig) value(flag string) string {
	switch flag {
	case "name":
		return c.Name
	case "initial-cluster":
		return c.InitialCluster
	case "initial-advertise-peer-urls":
		return c.PeerURL
	}
	return c.State
}

// hasFlag reports whether the manifest passes etcd the flag itself.
func hasFlag(manifest, flag string) bool {
	return regexp.MustCompile(`--` + regexp.QuoteMeta(flag) + `[= ]`).MatchString(manifest)
}

// renderEnvFile returns base without any earlier recover block, plus a
// recover block for c, as the OpenShift 4.3 recovery script writes it. A
// variable whose flag the manifest already passes is left out: etcd 3.6+
// stops when a variable is shadowed by a flag.
func renderEnvFile(base, manifest string, c MemberConfig) string {
	if i := strings.Index(base, recoverMarker); i >= 0 {
		base = base[:i]
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(base, "\n"))
	b.WriteString("\n\n" + recoverMarker + "\n")
	for _, v := range recoverVars {
		if !hasFlag(manifest, v[1]) {
			fmt.Fprintf(&b, "%s=%q\n", v[0], c.value(v[1]))
		}
	}
	return b.String()
}

// setScriptFlags replaces the values of the member's own flags where a
// start script passes them (--name, --initial-cluster,
// --initial-cluster-state); the advertised peer URL keeps the script's form.
func setScriptFlags(manifest string, c MemberConfig) string {
	for _, flag := range []string{"name", "initial-cluster", "initial-cluster-state"} {
		re := regexp.MustCompile(`(--` + regexp.QuoteMeta(flag) + `[= ])("[^"]*"|\S+)`)
		val := c.value(flag)
		manifest = re.ReplaceAllStringFunc(manifest, func(m string) string {
			return re.FindStringSubmatch(m)[1] + val
		})
	}
	return manifest
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
	ListenIP  string
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
	listen := s.ListenIP
	if listen == "" {
		listen = "0.0.0.0"
	}
	certDir := "/" + s.Prof.CertDir
	dataDir := "/" + s.Prof.DataDir
	flags := []string{
		"--name=" + s.Config.Name,
		"--data-dir=" + dataDir,
		"--initial-cluster=" + s.Config.InitialCluster,
		"--initial-cluster-state=" + s.Config.State,
		"--initial-advertise-peer-urls=" + s.Config.PeerURL,
		"--listen-peer-urls=https://" + net.JoinHostPort(listen, peer.Port()),
		"--advertise-client-urls=" + s.ClientURL,
		"--listen-client-urls=https://" + net.JoinHostPort(listen, client.Port()),
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
// root: the flags the manifest passes (values still holding ${VARS} are
// skipped), overlaid with the recover block of the environment file.
func ReadMemberConfig(root string, prof *profile.Profile) (MemberConfig, error) {
	b, err := os.ReadFile(filepath.Join(root, prof.Manifest))
	if err != nil {
		return MemberConfig{}, err
	}
	var c MemberConfig
	for _, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "- ")), " \\")
		for _, v := range recoverVars {
			if val, ok := strings.CutPrefix(t, "--"+v[1]+"="); ok && !strings.Contains(val, "${") {
				c.set(v[1], strings.Trim(val, `"`))
			}
		}
	}
	if prof.EnvFile != "" {
		env, _, err := readRecoverBlock(filepath.Join(root, prof.EnvFile))
		if err != nil {
			return c, err
		}
		for _, v := range recoverVars {
			if val := env.value(v[1]); val != "" {
				c.set(v[1], val)
			}
		}
	}
	if c.Name == "" || c.InitialCluster == "" {
		return c, fmt.Errorf("%s sets no member name and initial cluster", prof.Manifest)
	}
	return c, nil
}

func (c *MemberConfig) set(flag, v string) {
	switch flag {
	case "name":
		c.Name = v
	case "initial-cluster":
		c.InitialCluster = v
	case "initial-advertise-peer-urls":
		c.PeerURL = v
	default:
		c.State = v
	}
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

package join

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// rendered returns the files the member's etcd configuration consists of,
// in write order (environment file before the manifest, which the kubelet
// acts on at once).
func (jn *joiner) rendered() ([][2]string, error) {
	ic := jn.j.Notes["initialCluster"]
	if ic == "" {
		return nil, errors.New("no initial cluster recorded: the member-add step has not run")
	}
	c := manifest.Member{Name: jn.m.Name, InitialCluster: ic, State: "existing", PeerURL: jn.m.PeerURL}
	var m *manifest.Manifest
	if k := jn.kept(jn.prof.Manifest); k != "" {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, fmt.Errorf("kept manifest: %w", err)
		}
		if m, err = manifest.Parse(b); err != nil {
			return nil, fmt.Errorf("kept manifest %s: %w", k, err)
		}
		if jn.prof.Name == profile.OpenShift43 {
			// What the OpenShift 4.3 recovery script's patch_manifest
			// does: etcd takes its initial cluster from the recover block,
			// not from DNS discovery. The discovery init container keeps
			// its own flag: it still provides ETCD_DNS_NAME and the address.
			if _, err := m.RemoveScriptFlag("discovery-srv"); err != nil {
				return nil, err
			}
		}
		if err := m.SetMember(c); err != nil {
			return nil, err
		}
	} else {
		sc, sk := jn.certRel("server")
		pc, pk := jn.certRel("peer")
		fresh, err := renderFresh(freshSpec{
			Prof: jn.prof, Image: jn.o.Image, Config: c, ClientURL: jn.m.ClientURL, ListenIP: jn.o.ListenIP,
			ServerCert: "/" + sc, ServerKey: "/" + sk, PeerCert: "/" + pc, PeerKey: "/" + pk, CACert: "/" + jn.prof.CACert,
		})
		if err != nil {
			return nil, err
		}
		if m, err = manifest.Parse([]byte(fresh)); err != nil {
			return nil, fmt.Errorf("new etcd manifest: %w", err)
		}
	}
	b, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	var out [][2]string
	if jn.prof.EnvFile != "" {
		var envBase []byte
		if k := jn.kept(jn.prof.EnvFile); k != "" {
			if envBase, err = os.ReadFile(k); err != nil {
				return nil, fmt.Errorf("kept %s: %w", jn.prof.EnvFile, err)
			}
		}
		env, err := m.WithRecoverBlock(envBase, c)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]string{jn.prof.EnvFile, string(env)})
	}
	return append(out, [2]string{jn.prof.Manifest, string(b)}), nil
}

func (jn *joiner) configStep() steps.Step {
	return steps.Step{
		Name: "write-config",
		Describe: func() string {
			what := jn.prof.Manifest
			if jn.prof.EnvFile != "" {
				what = jn.prof.EnvFile + " (recover block) and " + what
			}
			ic := jn.j.Notes["initialCluster"]
			if ic == "" {
				ic = "<current members>+" + jn.m.Name
			}
			return fmt.Sprintf("write %s: initial-cluster=%s, initial-cluster-state=existing", what, ic)
		},
		Check: func(context.Context) (steps.State, error) {
			files, err := jn.rendered()
			if err != nil {
				return steps.ToDo, nil
			}
			for _, f := range files {
				if b, err := os.ReadFile(jn.abs(f[0])); err != nil || string(b) != f[1] {
					return steps.ToDo, nil
				}
			}
			if jn.j.Notes["dir:"+jn.prof.DataDir] == "" {
				return steps.ToDo, nil
			}
			return steps.Done, nil
		},
		Run: func(context.Context) error {
			files, err := jn.rendered()
			if err != nil {
				return err
			}
			if err := jn.recordDataDir(); err != nil {
				return err
			}
			// The data dir etcd creates from here on is this member's.
			if err := os.MkdirAll(jn.abs(jn.prof.DataDir), 0o700); err != nil {
				return err
			}
			if err := jn.j.Note("dir:"+jn.prof.DataDir, "ours"); err != nil {
				return err
			}
			for _, f := range files {
				if err := jn.writeOurs(f[0], []byte(f[1]), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// freshSpec is what a new etcd manifest needs when the master has none.
type freshSpec struct {
	Prof      *profile.Profile
	Image     string
	Config    manifest.Member
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

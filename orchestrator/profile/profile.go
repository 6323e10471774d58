// Package profile knows where each kind of master keeps its etcd: the static
// pod manifest, the data dir, the CA and the member certificates. All paths
// are relative to the master's root, so the same profile serves a live host
// (root "/") and a master disk mounted in the rescue image.
package profile

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// Profile is one master layout.
type Profile struct {
	// Name is "openshift-4.3" or "kubeadm".
	Name string
	// ManifestDir holds the static pod manifests the kubelet runs.
	ManifestDir string
	// Manifest is the etcd static pod manifest.
	Manifest string
	// DataDir is etcd's data dir on the host.
	DataDir string
	// CACert and CAKey are the etcd CA (the key exists on the survivor only).
	CACert, CAKey string
	// CertDir holds the member certificates on the host.
	CertDir string
	// EnvFile is the environment file etcd's start script sources, if any
	// (OpenShift 4.3: /etc/etcd/etcd.conf, where the recovery writes the
	// member's name and initial cluster).
	EnvFile string
	// StaticPodResources holds the kube static pod resources a backup carries.
	StaticPodResources string
	// ResourcesBase is the folder the static resources tarball's entries are
	// relative to.
	ResourcesBase string
	// StaticPods are the other control plane pods' manifests, in the order
	// they are stopped (and reversed to start).
	StaticPods []string
	// certName maps a kind (peer, server, metric) and member to cert/key paths.
	certName func(kind, member string) (cert, key string)
}

// Names lists the known profiles.
func Names() []string { return []string{OpenShift43, Kubeadm} }

const (
	// OpenShift43 is the OpenShift 4.1–4.3 master layout (etcd-member static pod).
	OpenShift43 = "openshift-4.3"
	// Kubeadm is the kubeadm stacked-etcd layout.
	Kubeadm = "kubeadm"
)

var profiles = map[string]*Profile{
	OpenShift43: {
		Name:               OpenShift43,
		ManifestDir:        "etc/kubernetes/manifests",
		Manifest:           "etc/kubernetes/manifests/etcd-member.yaml",
		DataDir:            "var/lib/etcd",
		CACert:             "etc/kubernetes/static-pod-resources/etcd-member/ca.crt",
		CAKey:              "etc/kubernetes/static-pod-resources/etcd-member/ca.key",
		CertDir:            "etc/kubernetes/static-pod-resources/etcd-member",
		EnvFile:            "etc/etcd/etcd.conf",
		StaticPodResources: "etc/kubernetes/static-pod-resources",
		ResourcesBase:      "etc/kubernetes",
		StaticPods: []string{
			"etc/kubernetes/manifests/kube-scheduler-pod.yaml",
			"etc/kubernetes/manifests/kube-controller-manager-pod.yaml",
			"etc/kubernetes/manifests/kube-apiserver-pod.yaml",
		},
		certName: func(kind, member string) (string, string) {
			base := filepath.Join("etc/kubernetes/static-pod-resources/etcd-member", "system:etcd-"+kind+":"+member)
			return base + ".crt", base + ".key"
		},
	},
	Kubeadm: {
		Name:               Kubeadm,
		ManifestDir:        "etc/kubernetes/manifests",
		Manifest:           "etc/kubernetes/manifests/etcd.yaml",
		DataDir:            "var/lib/etcd",
		CACert:             "etc/kubernetes/pki/etcd/ca.crt",
		CAKey:              "etc/kubernetes/pki/etcd/ca.key",
		CertDir:            "etc/kubernetes/pki/etcd",
		StaticPodResources: "etc/kubernetes/pki",
		ResourcesBase:      "etc/kubernetes",
		StaticPods: []string{
			"etc/kubernetes/manifests/kube-scheduler.yaml",
			"etc/kubernetes/manifests/kube-controller-manager.yaml",
			"etc/kubernetes/manifests/kube-apiserver.yaml",
		},
		certName: func(kind, _ string) (string, string) {
			if kind == "metric" {
				kind = "server" // kubeadm serves metrics over plain HTTP on localhost
			}
			base := filepath.Join("etc/kubernetes/pki/etcd", kind)
			return base + ".crt", base + ".key"
		},
	},
}

// Get returns a profile by name.
func Get(name string) (*Profile, error) {
	p, ok := profiles[name]
	if !ok {
		return nil, fmt.Errorf("unknown profile %q: use one of %s", name, strings.Join(Names(), ", "))
	}
	cp := *p
	return &cp, nil
}

// Detect finds the profile whose etcd manifest exists under root. The
// kubelet's own state may have been moved aside by an earlier, interrupted
// run, so the manifest is also looked for in the recovery's keep folder.
func Detect(root string) (*Profile, error) {
	return DetectIn(&rootfs.Root{Path: root})
}

// DetectIn is Detect on an opened root: the manifests are looked for as the
// master sees them, symlinks followed inside the root.
func DetectIn(r *rootfs.Root) (*Profile, error) {
	root := r.Path
	var found []string
	for _, n := range Names() {
		p := profiles[n]
		if _, err := r.Stat(p.Manifest); err == nil {
			found = append(found, n)
		}
	}
	sort.Strings(found)
	switch len(found) {
	case 1:
		return Get(found[0])
	case 0:
		return nil, fmt.Errorf("no etcd manifest found under %s (looked for %s): is this a master's root? Pass --profile to say which layout it has",
			root, strings.Join(manifestPaths(), ", "))
	default:
		return nil, fmt.Errorf("%s holds the etcd manifests of several profiles (%s): pass --profile", root, strings.Join(found, ", "))
	}
}

func manifestPaths() []string {
	var out []string
	for _, n := range Names() {
		out = append(out, "/"+profiles[n].Manifest)
	}
	return out
}

// MemberCert returns the cert and key paths of a member's certificate kind
// ("peer", "server" or "metric"), relative to the root.
func (p *Profile) MemberCert(kind, member string) (cert, key string) {
	return p.certName(kind, member)
}

// Abs is the host path of a profile path on a root, symlinks followed
// inside the root as the master would (see rootfs). A path that cannot be
// resolved (a symlink loop) is joined as written: using it then fails.
func Abs(root, rel string) string {
	p, err := (&rootfs.Root{Path: root}).Resolve(rel)
	if err != nil {
		return filepath.Join(root, rel)
	}
	return p
}

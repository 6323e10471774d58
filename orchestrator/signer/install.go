package signer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// Install kinds: how the signer runs on the restored master after it boots
// its own OS again.
const (
	// KindSystemd is a systemd service, enabled for multi-user.target.
	KindSystemd = "systemd"
	// KindStaticPod is a kubelet static pod with the host's root mounted.
	KindStaticPod = "static-pod"
)

// Paths of the installed files, relative to the master's root.
const (
	UnitPath      = "etc/systemd/system/etcd-rescue-signer.service"
	UnitWantsPath = "etc/systemd/system/multi-user.target.wants/etcd-rescue-signer.service"
	PodPath       = "etc/kubernetes/manifests/etcd-rescue-signer.yaml"
	// DefaultBinary is where the restore copies etcd-rescue on the master:
	// /usr is read-only on CoreOS-family hosts, /var is not.
	DefaultBinary = "/var/lib/etcd-rescue/bin/etcd-rescue"
)

// InstallOptions says how the signer is run on the master.
type InstallOptions struct {
	// Kind is KindSystemd (default) or KindStaticPod.
	Kind string
	// Binary is the etcd-rescue path on the master. Default DefaultBinary.
	Binary string
	// Plan is the plan file's path on the master. Default plan.DefaultPath.
	Plan string
	// Listen is the signer's address. Default :9943.
	Listen string
	// Image runs the static pod; any image works, the binary is static and
	// comes from the host. Required for KindStaticPod.
	Image string
	// Args are extra signer flags (for example --ttl 3h).
	Args []string
	// BeforeWrite, when set, is called with each file's host path before
	// Install writes it (not for one already as wanted): the restore keeps
	// the file there aside, or records the path as created, so an undo
	// takes the signer away again (keep.Keeper.BeforeWrite).
	BeforeWrite func(path string) error
}

func (o InstallOptions) withDefaults() InstallOptions {
	if o.Kind == "" {
		o.Kind = KindSystemd
	}
	if o.Binary == "" {
		o.Binary = DefaultBinary
	}
	if o.Plan == "" {
		o.Plan = plan.DefaultPath
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	return o
}

// File is one file Install writes; Link is set for a symlink.
type File struct {
	Path    string
	Content []byte
	Mode    fs.FileMode
	Link    string
}

// Manifest returns the files that run the signer: a systemd unit (and its
// enablement link) or a static pod. Once the signer reaches full membership
// or its TTL, it removes them itself (--remove-when-done).
func Manifest(o InstallOptions) ([]File, error) {
	o = o.withDefaults()
	switch o.Kind {
	case KindSystemd:
		args := append([]string{o.Binary, "signer", "--root", "/", "--plan", o.Plan, "--listen", o.Listen, "--remove-when-done"}, o.Args...)
		unit := fmt.Sprintf(`# Written by etcd-rescue; removes itself when the etcd membership is full.
[Unit]
Description=etcd-rescue temporary etcd certificate signer
Wants=network-online.target
After=network-online.target
ConditionPathExists=%s

[Service]
Type=simple
ExecStart=%s
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
`, o.Binary, strings.Join(args, " "))
		return []File{
			{Path: UnitPath, Content: []byte(unit), Mode: 0o644},
			{Path: UnitWantsPath, Link: "../etcd-rescue-signer.service"},
		}, nil
	case KindStaticPod:
		if o.Image == "" {
			return nil, errors.New("a static pod needs an image: pass the etcd image (the binary itself comes from the host)")
		}
		args := append([]string{"/host" + o.Binary, "signer", "--root", "/host", "--plan", "/host" + o.Plan, "--listen", o.Listen, "--remove-when-done"}, o.Args...)
		var cmd strings.Builder
		for _, a := range args {
			fmt.Fprintf(&cmd, "    - %q\n", a)
		}
		pod := fmt.Sprintf(`# Written by etcd-rescue; removes itself when the etcd membership is full.
apiVersion: v1
kind: Pod
metadata:
  name: etcd-rescue-signer
  namespace: openshift-etcd
  labels:
    app: etcd-rescue-signer
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  restartPolicy: OnFailure
  containers:
  - name: signer
    image: %s
    command:
%s    securityContext:
      privileged: true
    volumeMounts:
    - name: host
      mountPath: /host
  volumes:
  - name: host
    hostPath:
      path: /
`, o.Image, cmd.String())
		return []File{{Path: PodPath, Content: []byte(pod), Mode: 0o644}}, nil
	default:
		return nil, fmt.Errorf("install kind %q is unknown: use %s or %s", o.Kind, KindSystemd, KindStaticPod)
	}
}

// Install writes the signer's unit or static pod into root and returns the
// paths written. Writing the same files again is a no-op.
func Install(root string, o InstallOptions) ([]string, error) {
	files, err := Manifest(o)
	if err != nil {
		return nil, err
	}
	r, err := rootfs.Open(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		// Paths resolve inside the root as the master sees them; the
		// unit's enabling link is itself not followed.
		resolve := r.Resolve
		if f.Link != "" {
			resolve = r.ResolveParent
		}
		p, err := resolve(f.Path)
		if err != nil {
			return out, err
		}
		if f.Link != "" {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return out, err
			}
			if have, err := os.Readlink(p); err == nil && have == f.Link {
				out = append(out, p)
				continue
			}
			if err := o.beforeWrite(p); err != nil {
				return out, err
			}
			_ = os.Remove(p) // a wrong link of our own name
			if err := os.Symlink(f.Link, p); err != nil {
				return out, fmt.Errorf("enable signer unit: %w", err)
			}
		} else {
			if have, err := os.ReadFile(p); err == nil && bytes.Equal(have, f.Content) {
				out = append(out, p)
				continue
			}
			if err := o.beforeWrite(p); err != nil {
				return out, err
			}
			if err := atomicfile.WriteFile(p, f.Content, f.Mode); err != nil {
				return out, fmt.Errorf("write %s: %w", p, err)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func (o InstallOptions) beforeWrite(p string) error {
	if o.BeforeWrite == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return o.BeforeWrite(p)
}

// Uninstall removes whatever Install wrote into root (both kinds) and
// returns the paths removed. These files are the signer's own, so they are
// removed, not kept.
func Uninstall(root string) ([]string, error) {
	r, err := rootfs.Open(root)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, rel := range []string{UnitWantsPath, UnitPath, PodPath} {
		p, err := r.ResolveParent(rel)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out, errors.Join(errs...)
}

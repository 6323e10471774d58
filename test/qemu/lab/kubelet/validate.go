package kubelet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// decodePod decodes a static pod manifest the way a strict kubelet would
// accept it: a v1 Pod with no unknown fields, a name, named containers with
// images, hostPath volumes at absolute clean paths, and volume mounts that
// name a volume and an absolute mount path. Anything else is refused with
// the reason, and the pod is not started.
func decodePod(b []byte) (*corev1.Pod, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var p corev1.Pod
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("not a valid Pod: %w", err)
	}
	var errs []string
	add := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if p.APIVersion != "v1" || p.Kind != "Pod" {
		add("apiVersion/kind is %q/%q, want v1/Pod", p.APIVersion, p.Kind)
	}
	if p.Name == "" {
		add("metadata.name is empty")
	}
	vols := map[string]bool{}
	for _, v := range p.Spec.Volumes {
		if v.Name == "" || vols[v.Name] {
			add("volume name %q is empty or repeated", v.Name)
		}
		vols[v.Name] = true
		if v.HostPath != nil && !cleanAbs(v.HostPath.Path) {
			add("volume %s: hostPath %q is not an absolute clean path", v.Name, v.HostPath.Path)
		}
	}
	if len(p.Spec.Containers) == 0 {
		add("no containers")
	}
	names := map[string]bool{}
	all := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	for _, c := range all {
		if c.Name == "" || names[c.Name] {
			add("container name %q is empty or repeated", c.Name)
		}
		names[c.Name] = true
		if c.Image == "" {
			add("container %s has no image", c.Name)
		}
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				add("container %s mounts volume %q, which the pod does not define", c.Name, m.Name)
			}
			if !path.IsAbs(m.MountPath) {
				add("container %s: mountPath %q is not absolute", c.Name, m.MountPath)
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return &p, nil
}

func cleanAbs(p string) bool {
	return path.IsAbs(p) && path.Clean(p) == strings.TrimSuffix(p, "/") || p == "/"
}

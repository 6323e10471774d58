// Package manifest reads and rewrites the etcd static pod manifest of a
// master. Edits are made on the YAML node tree, so everything the recovery
// does not change (field order, comments, fields the typed API does not
// know) stays as the cluster's own tooling wrote it.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	yaml "gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
)

// Manifest is a static pod manifest file.
type Manifest struct {
	Path string
	// Pod is the typed view, refreshed after every edit.
	Pod *corev1.Pod
	// Container is the name of the etcd container.
	Container string

	doc  yaml.Node
	mode os.FileMode
	uid  int
	gid  int
}

// Load reads a manifest and finds its etcd container.
func Load(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read etcd manifest: %w", err)
	}
	m, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("etcd manifest %s: %w", path, err)
	}
	m.Path = path
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	m.mode = st.Mode().Perm()
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		m.uid, m.gid = int(s.Uid), int(s.Gid)
	}
	return m, nil
}

// Parse decodes a manifest from bytes.
func Parse(b []byte) (*Manifest, error) {
	m := &Manifest{mode: 0o644}
	if err := yaml.Unmarshal(b, &m.doc); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	if m.doc.Kind != yaml.DocumentNode || len(m.doc.Content) != 1 || m.doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a single YAML mapping (a Pod)")
	}
	if err := m.refresh(); err != nil {
		return nil, err
	}
	if m.Pod.Kind != "Pod" {
		return nil, fmt.Errorf("kind is %q, want Pod", m.Pod.Kind)
	}
	c, err := findEtcdContainer(m.Pod)
	if err != nil {
		return nil, err
	}
	m.Container = c
	return m, nil
}

func (m *Manifest) refresh() error {
	b, err := m.Bytes()
	if err != nil {
		return err
	}
	var pod corev1.Pod
	if err := k8syaml.Unmarshal(b, &pod); err != nil {
		return fmt.Errorf("not a Pod: %w", err)
	}
	m.Pod = &pod
	return nil
}

// findEtcdContainer picks the container that runs etcd: named etcd or
// etcd-member, or else the only one whose command mentions etcd.
func findEtcdContainer(p *corev1.Pod) (string, error) {
	var mentions []string
	for _, c := range p.Spec.Containers {
		if c.Name == "etcd" || c.Name == "etcd-member" {
			return c.Name, nil
		}
		if strings.Contains(strings.Join(append(c.Command, c.Args...), " "), "etcd ") {
			mentions = append(mentions, c.Name)
		}
	}
	if len(mentions) == 1 {
		return mentions[0], nil
	}
	return "", fmt.Errorf("no etcd container (named etcd or etcd-member) in pod %s", p.Name)
}

// EtcdContainer returns the typed etcd container.
func (m *Manifest) EtcdContainer() *corev1.Container {
	for i := range m.Pod.Spec.Containers {
		if m.Pod.Spec.Containers[i].Name == m.Container {
			return &m.Pod.Spec.Containers[i]
		}
	}
	return nil
}

// Bytes encodes the manifest.
func (m *Manifest) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&m.doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTo writes the manifest to path atomically, with the mode and owner
// the original file had.
func (m *Manifest) WriteTo(path string) error {
	b, err := m.Bytes()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b, m.mode); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return os.Lchown(path, m.uid, m.gid)
	}
	return nil
}

// containerNode returns the YAML mapping of the etcd container.
func (m *Manifest) containerNode() (*yaml.Node, error) {
	spec := mapGet(m.doc.Content[0], "spec")
	list := mapGet(spec, "containers")
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil, errors.New("spec.containers missing")
	}
	for _, c := range list.Content {
		if n := mapGet(c, "name"); n != nil && n.Value == m.Container {
			return c, nil
		}
	}
	return nil, fmt.Errorf("container %s missing", m.Container)
}

func mapGet(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func mapSet(n *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content[i+1] = v
			return
		}
	}
	n.Content = append(n.Content, scalar(key), v)
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

package manifest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	yaml "gopkg.in/yaml.v3"
)

// SetFlag sets --name=value in the etcd container's command or args list,
// replacing an existing --name (in either --name=v or "--name v" form) or
// appending it. It is for manifests that call etcd directly (kubeadm);
// start scripts are edited with SetEnv.
func (m *Manifest) SetFlag(name, value string) error {
	c, err := m.containerNode()
	if err != nil {
		return err
	}
	if m.ScriptForm() {
		return fmt.Errorf("container %s runs a shell script: set %s through the environment", m.Container, name)
	}
	target := mapGet(c, "args")
	if target == nil || len(target.Content) == 0 {
		target = mapGet(c, "command")
	}
	if target == nil || target.Kind != yaml.SequenceNode {
		return fmt.Errorf("container %s has no command or args list", m.Container)
	}
	flag := "--" + name
	for i, n := range target.Content {
		switch {
		case strings.HasPrefix(n.Value, flag+"="):
			n.Value = flag + "=" + value
			n.Style = 0
			return m.refresh()
		case n.Value == flag && i+1 < len(target.Content):
			target.Content[i+1].Value = value
			return m.refresh()
		}
	}
	target.Content = append(target.Content, scalar(flag+"="+value))
	return m.refresh()
}

// Flag returns the value of --name in a list-form command, or "".
func (m *Manifest) Flag(name string) string {
	c := m.EtcdContainer()
	args := append(append([]string{}, c.Command...), c.Args...)
	flag := "--" + name
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// SetEnv sets an environment variable of the etcd container to a literal
// value, replacing any earlier definition (value or valueFrom).
func (m *Manifest) SetEnv(name, value string) error {
	c, err := m.containerNode()
	if err != nil {
		return err
	}
	env := mapGet(c, "env")
	if env == nil {
		env = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		mapSet(c, "env", env)
	}
	entry := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		scalar("name"), scalar(name), scalar("value"), quoted(value),
	}}
	for i, e := range env.Content {
		if n := mapGet(e, "name"); n != nil && n.Value == name {
			env.Content[i] = entry
			return m.refresh()
		}
	}
	env.Content = append(env.Content, entry)
	return m.refresh()
}

func quoted(s string) *yaml.Node {
	n := scalar(s)
	n.Style = yaml.DoubleQuotedStyle
	return n
}

// ScriptForm reports whether the etcd container runs a shell script
// (command: [/bin/sh, -c, script]) rather than etcd directly.
func (m *Manifest) ScriptForm() bool {
	_, ok := m.script()
	return ok
}

func (m *Manifest) script() (string, bool) {
	c := m.EtcdContainer()
	all := append(append([]string{}, c.Command...), c.Args...)
	if len(all) >= 3 && isShell(all[0]) && strings.HasPrefix(all[1], "-") && strings.Contains(all[1], "c") {
		return all[2], true
	}
	return "", false
}

func isShell(s string) bool {
	switch s {
	case "/bin/sh", "sh", "/bin/bash", "bash", "/usr/bin/bash", "/usr/bin/sh":
		return true
	}
	return false
}

// RemoveScriptFlag deletes every line of the start script that passes
// --name (the OpenShift 4.3 restore removes --discovery-srv this way: DNS
// discovery must not override the restored one-member cluster). It reports
// whether a line was removed.
func (m *Manifest) RemoveScriptFlag(name string) (bool, error) {
	c, err := m.containerNode()
	if err != nil {
		return false, err
	}
	node, err := scriptNode(c)
	if err != nil {
		return false, err
	}
	re := regexp.MustCompile(`^\s*--` + regexp.QuoteMeta(name) + `([=\s].*)?$`)
	var kept []string
	removed := false
	for _, line := range strings.Split(node.Value, "\n") {
		if re.MatchString(line) {
			removed = true
			continue
		}
		kept = append(kept, line)
	}
	if removed {
		node.Value = strings.Join(kept, "\n")
	}
	return removed, m.refresh()
}

func scriptNode(c *yaml.Node) (*yaml.Node, error) {
	for _, key := range []string{"command", "args"} {
		seq := mapGet(c, key)
		if seq == nil || seq.Kind != yaml.SequenceNode {
			continue
		}
		for i, n := range seq.Content {
			if strings.HasPrefix(n.Value, "-") && strings.Contains(n.Value, "c") && i+1 < len(seq.Content) {
				return seq.Content[i+1], nil
			}
		}
	}
	return nil, errors.New("no shell script in the etcd container")
}

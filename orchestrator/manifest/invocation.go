package manifest

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Runtime is what the kubelet and the pod's init containers would provide
// when the etcd container starts.
type Runtime struct {
	// Root is the master's root; hostPath volumes are read under it.
	Root string
	// NodeName is the node's name: a static pod's name is the manifest's
	// name plus "-" plus the node name, and fieldRef metadata.name sees that.
	NodeName string
	// Files gives the contents of container paths that are not on the disk
	// (for example /run/etcd/environment, written at start by OpenShift's
	// discovery init container).
	Files map[string]string
}

// Mount is a hostPath volume mounted into the etcd container.
type Mount struct {
	HostPath      string // absolute on the master
	ContainerPath string
	ReadOnly      bool
}

// Invocation is the etcd process a manifest starts.
type Invocation struct {
	// Argv is the etcd command line, argv[0] included, as the container sees it.
	Argv []string
	// Env is the process environment (KEY=VALUE, sorted).
	Env []string
	// Mounts are the hostPath mounts of the container.
	Mounts []Mount
}

// Invocation resolves the etcd command line and environment the manifest
// starts, the way the kubelet and the container's shell would: env entries
// (literal and metadata.name), then for a start script the subset of shell
// the etcd manifests use (set, source, assignments, exec etcd with
// continuation lines and ${VAR} expansion). Anything outside that subset
// is an error, not a guess.
func (m *Manifest) Invocation(rt Runtime) (*Invocation, error) {
	c := m.EtcdContainer()
	inv := &Invocation{}
	vols := map[string]string{}
	for _, v := range m.Pod.Spec.Volumes {
		if v.HostPath != nil {
			vols[v.Name] = v.HostPath.Path
		}
	}
	for _, vm := range c.VolumeMounts {
		hp, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %s of container %s has no hostPath volume", vm.Name, c.Name)
		}
		inv.Mounts = append(inv.Mounts, Mount{HostPath: hp, ContainerPath: vm.MountPath, ReadOnly: vm.ReadOnly})
	}

	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			if rt.NodeName == "" {
				return nil, fmt.Errorf("env %s comes from the pod name, which needs the node name", e.Name)
			}
			env[e.Name] = m.Pod.Name + "-" + rt.NodeName
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = m.Pod.Namespace
		default:
			return nil, fmt.Errorf("env %s: only literal values and metadata.name/namespace field references are supported", e.Name)
		}
	}

	if script, ok := m.script(); ok {
		sh := &shell{vars: env, exported: map[string]bool{}, rt: rt, inv: inv}
		for k := range env {
			sh.exported[k] = true
		}
		argv, err := sh.run(script)
		if err != nil {
			return nil, fmt.Errorf("etcd start script: %w", err)
		}
		inv.Argv = argv
		for k := range sh.exported {
			inv.Env = append(inv.Env, k+"="+sh.vars[k])
		}
	} else {
		inv.Argv = append(append([]string{}, c.Command...), c.Args...)
		for k, v := range env {
			inv.Env = append(inv.Env, k+"="+v)
		}
	}
	if len(inv.Argv) == 0 || path.Base(inv.Argv[0]) != "etcd" {
		return nil, fmt.Errorf("the etcd container does not run etcd (command %q)", inv.Argv)
	}
	sort.Strings(inv.Env)
	return inv, nil
}

// HostPath maps a container path to the host path under root, through the
// container's mounts; ok is false when no mount covers it.
func (inv *Invocation) HostPath(root, p string) (string, bool) {
	best := -1
	for i, mt := range inv.Mounts {
		cp := strings.TrimSuffix(mt.ContainerPath, "/")
		if (p == cp || strings.HasPrefix(p, cp+"/")) && (best < 0 || len(cp) > len(strings.TrimSuffix(inv.Mounts[best].ContainerPath, "/"))) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	mt := inv.Mounts[best]
	rel := strings.TrimPrefix(p, strings.TrimSuffix(mt.ContainerPath, "/"))
	return filepath.Join(root, mt.HostPath, rel), true
}

// Flags returns etcd's effective settings: command-line flags, then ETCD_*
// environment variables for flags not given, as etcd itself resolves them.
func (inv *Invocation) Flags() map[string]string {
	out := map[string]string{}
	for _, kv := range inv.Env {
		k, v, _ := strings.Cut(kv, "=")
		if name, ok := strings.CutPrefix(k, "ETCD_"); ok {
			out[strings.ReplaceAll(strings.ToLower(name), "_", "-")] = v
		}
	}
	args := inv.Argv[1:]
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if !strings.HasPrefix(args[i], "-") {
			continue
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			out[k] = v
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			out[a] = args[i+1]
			i++
		} else {
			out[a] = "true"
		}
	}
	return out
}

// shell interprets the small shell subset of etcd start scripts.
type shell struct {
	vars      map[string]string
	exported  map[string]bool
	allexport bool
	nounset   bool
	rt        Runtime
	inv       *Invocation
}

func (s *shell) run(script string) ([]string, error) {
	for _, line := range logicalLines(script) {
		words, err := s.words(line)
		if err != nil {
			return nil, err
		}
		if len(words) == 0 {
			continue
		}
		switch w := words[0]; {
		case w == "set":
			for _, o := range words[1:] {
				if strings.HasPrefix(o, "-") || strings.HasPrefix(o, "+") {
					on := o[0] == '-'
					if strings.Contains(o, "a") {
						s.allexport = on
					}
					if strings.Contains(o, "u") {
						s.nounset = on
					}
				}
			}
		case w == "source" || w == ".":
			if len(words) != 2 {
				return nil, fmt.Errorf("%q: source takes one file", line)
			}
			if err := s.source(words[1]); err != nil {
				return nil, err
			}
		case w == "export":
			for _, a := range words[1:] {
				k, v, ok := strings.Cut(a, "=")
				if ok {
					s.vars[k] = v
				}
				s.exported[k] = true
			}
		case w == "exec":
			if len(words) < 2 {
				return nil, fmt.Errorf("%q: exec of nothing", line)
			}
			return words[1:], nil
		case path.Base(w) == "etcd":
			return words, nil
		case isAssignment(w) && len(words) == 1:
			k, v, _ := strings.Cut(w, "=")
			s.assign(k, v)
		default:
			return nil, fmt.Errorf("unsupported command %q before etcd starts", line)
		}
	}
	return nil, fmt.Errorf("the script never starts etcd")
}

func (s *shell) assign(k, v string) {
	s.vars[k] = v
	if s.allexport {
		s.exported[k] = true
	}
}

// source reads KEY=VALUE lines from a file the container sees.
func (s *shell) source(p string) error {
	content, ok := s.rt.Files[p]
	if !ok {
		host, mounted := s.inv.HostPath(s.rt.Root, p)
		if !mounted {
			return fmt.Errorf("source %s: no hostPath volume is mounted there", p)
		}
		b, err := os.ReadFile(host)
		if err != nil {
			return fmt.Errorf("source %s: %w", p, err)
		}
		content = string(b)
	}
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		words, err := s.words(line)
		if err != nil {
			return fmt.Errorf("source %s: %w", p, err)
		}
		if len(words) != 1 || !isAssignment(words[0]) {
			return fmt.Errorf("source %s: %q is not KEY=VALUE", p, line)
		}
		k, v, _ := strings.Cut(words[0], "=")
		s.assign(k, v)
	}
	return sc.Err()
}

func isAssignment(w string) bool {
	k, _, ok := strings.Cut(w, "=")
	if !ok || k == "" {
		return false
	}
	for i, r := range k {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// logicalLines joins backslash-continued lines and drops comments.
func logicalLines(script string) []string {
	var out []string
	var cur strings.Builder
	for _, raw := range strings.Split(script, "\n") {
		line := strings.TrimRight(raw, " \t")
		if strings.HasPrefix(strings.TrimSpace(line), "#") && cur.Len() == 0 {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// words splits a line into words with quote handling and $VAR / ${VAR}
// expansion (none inside single quotes).
func (s *shell) words(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("%q: unterminated quote", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("%q: unterminated quote", line)
			}
			v, err := s.expand(line[i+1 : i+1+j])
			if err != nil {
				return nil, err
			}
			cur.WriteString(v)
			i += j + 1
			inWord = true
		case ch == '$':
			n, v, err := s.variable(line[i:])
			if err != nil {
				return nil, err
			}
			cur.WriteString(v)
			i += n - 1
			inWord = true
		case ch == ';' || ch == '|' || ch == '&' || ch == '`' || ch == '<' || ch == '>' || ch == '(' || ch == '[':
			return nil, fmt.Errorf("%q: shell operator %q is not supported", line, ch)
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

func (s *shell) expand(str string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(str); i++ {
		if str[i] != '$' {
			b.WriteByte(str[i])
			continue
		}
		n, v, err := s.variable(str[i:])
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		i += n - 1
	}
	return b.String(), nil
}

// variable expands the $NAME or ${NAME} at the start of str and returns how
// many bytes it took.
func (s *shell) variable(str string) (int, string, error) {
	var name string
	var n int
	if strings.HasPrefix(str, "${") {
		end := strings.IndexByte(str, '}')
		if end < 0 {
			return 0, "", fmt.Errorf("%q: unterminated ${", str)
		}
		name, n = str[2:end], end+1
		if strings.ContainsAny(name, ":-=?+#%/") {
			return 0, "", fmt.Errorf("${%s}: parameter operators are not supported", name)
		}
	} else {
		j := 1
		for j < len(str) && (str[j] == '_' || str[j] >= 'A' && str[j] <= 'Z' || str[j] >= 'a' && str[j] <= 'z' || str[j] >= '0' && str[j] <= '9') {
			j++
		}
		if j == 1 {
			return 1, "$", nil
		}
		name, n = str[1:j], j
	}
	v, ok := s.vars[name]
	if !ok && s.nounset {
		return 0, "", fmt.Errorf("variable %s is not set (the script runs with set -u and would fail)", name)
	}
	return n, v, nil
}

// OnHost returns the command line and environment with every container
// path that a hostPath mount covers replaced by its path under root: what
// a launcher without mount namespaces runs to start etcd as the manifest says.
func (inv *Invocation) OnHost(root string) (argv, env []string) {
	mapValue := func(v string) string {
		if strings.HasPrefix(v, "/") {
			if hp, ok := inv.HostPath(root, v); ok {
				return hp
			}
		}
		return v
	}
	argv = append(argv, inv.Argv[0])
	for _, a := range inv.Argv[1:] {
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "-") {
			a = k + "=" + mapValue(v)
		} else {
			a = mapValue(a)
		}
		argv = append(argv, a)
	}
	for _, kv := range inv.Env {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, k+"="+mapValue(v))
	}
	return argv, env
}

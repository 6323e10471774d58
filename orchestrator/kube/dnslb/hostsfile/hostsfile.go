// Package hostsfile applies the A and AAAA records of a DNS change to a
// hosts file (/etc/hosts format): the records go into a block between
// "# BEGIN etcd-rescue" and "# END etcd-rescue" that is replaced on every
// run, and other lines naming the same hosts are commented out rather than
// deleted. The file is replaced atomically (rewritten in place when it is a
// bind mount) and keeps its mode.
package hostsfile

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/kube/dnslb"
)

const (
	begin    = "# BEGIN etcd-rescue"
	end      = "# END etcd-rescue"
	disabled = "# etcd-rescue replaced: "
)

// Render returns the hosts file content with the change applied.
func Render(old string, c dnslb.DNSChange) string {
	names := map[string]bool{}
	var block []string
	for _, r := range c.Records {
		if r.Type != "A" && r.Type != "AAAA" {
			continue
		}
		name := strings.TrimSuffix(r.Name, ".")
		names[name] = true
		for _, v := range r.Values {
			block = append(block, v+" "+name)
		}
	}
	var out []string
	in := false
	for _, l := range strings.Split(strings.TrimRight(old, "\n"), "\n") {
		switch {
		case strings.TrimSpace(l) == begin:
			in = true
			continue
		case strings.TrimSpace(l) == end:
			in = false
			continue
		case in:
			continue
		}
		if f := strings.Fields(strings.SplitN(l, "#", 2)[0]); len(f) > 1 && slices.ContainsFunc(f[1:], func(n string) bool { return names[n] }) {
			l = disabled + l
		}
		out = append(out, l)
	}
	if len(out) == 1 && out[0] == "" {
		out = nil
	}
	out = append(out, begin)
	out = append(out, block...)
	out = append(out, end)
	return strings.Join(out, "\n") + "\n"
}

// Apply rewrites the hosts file at path (created if missing).
func Apply(path string, c dnslb.DNSChange) error {
	old, err := os.ReadFile(path)
	mode := os.FileMode(0o644)
	switch {
	case err == nil:
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	case os.IsNotExist(err):
	default:
		return fmt.Errorf("read hosts file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hosts-etcd-rescue-*")
	if err != nil {
		return fmt.Errorf("hosts file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	content := Render(string(old), c)
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return fmt.Errorf("write hosts file: %w", err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		// A bind-mounted file (a container's /etc/hosts) cannot be
		// replaced, only rewritten.
		if werr := os.WriteFile(path, []byte(content), mode); werr != nil {
			return fmt.Errorf("replace hosts file %s: %v; rewrite in place: %w", path, err, werr)
		}
	}
	return nil
}

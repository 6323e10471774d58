package boot

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// MountSysroot is where the boot assembles the running OS's view of an
// OSTree root (RHCOS): the deployment with its stateroot's /var on top.
const MountSysroot = "/run/etcd-rescue/sysroot"

// ostreeDeployments lists the OSTree deployments in a root filesystem that
// hold /etc/kubernetes/manifests (RHCOS keeps /etc per deployment and /var
// per stateroot: ostree/deploy/<os>/deploy/<checksum>.<serial> and
// ostree/deploy/<os>/var).
func ostreeDeployments(root string) []string {
	m, _ := filepath.Glob(filepath.Join(root, "ostree/deploy/*/deploy/*/etc/kubernetes/manifests"))
	var out []string
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			out = append(out, strings.TrimSuffix(p, "/etc/kubernetes/manifests"))
		}
	}
	sort.Strings(out)
	return out
}

// isOSTreeRoot reports whether dir is an OSTree root holding a master.
func isOSTreeRoot(dir string) bool { return len(ostreeDeployments(dir)) > 0 }

// ostreeDeployment picks the deployment the machine boots by default: the
// only one, or the one the highest-version boot loader entry names with
// ostree=/ostree/boot.N/<os>/<checksum>/<serial> (resolved through the
// root's relative symlinks). entries are the contents of the boot
// partition's loader/entries/*.conf. It returns the deployment and its
// stateroot's var directory, or "" when root is not an OSTree root.
func ostreeDeployment(root string, entries [][]byte) (deploy, varDir string, err error) {
	deps := ostreeDeployments(root)
	switch {
	case len(deps) == 0:
		return "", "", nil
	case len(deps) == 1:
		deploy = deps[0]
	default:
		arg, err := defaultOSTreeArg(entries)
		if err != nil {
			return "", "", fmt.Errorf("%d OSTree deployments hold /etc/kubernetes/manifests and %v", len(deps), err)
		}
		real, err := filepath.EvalSymlinks(filepath.Join(root, arg))
		if err != nil {
			return "", "", fmt.Errorf("boot entry ostree=%s does not resolve in the root filesystem: %w", arg, err)
		}
		for _, d := range deps {
			if r, err := filepath.EvalSymlinks(d); err == nil && r == real {
				deploy = d
			}
		}
		if deploy == "" {
			return "", "", fmt.Errorf("boot entry ostree=%s names %s, which holds no /etc/kubernetes/manifests", arg, real)
		}
	}
	// deploy is <root>/ostree/deploy/<os>/deploy/<checksum>.<serial>.
	varDir = filepath.Join(filepath.Dir(filepath.Dir(deploy)), "var")
	if st, err := os.Stat(varDir); err != nil || !st.IsDir() {
		return "", "", fmt.Errorf("OSTree stateroot of %s has no var directory", deploy)
	}
	return deploy, varDir, nil
}

// defaultOSTreeArg returns the ostree= argument of the boot loader entry
// with the highest version (the default one).
func defaultOSTreeArg(entries [][]byte) (string, error) {
	best, bestArg := -1, ""
	for _, e := range entries {
		version, arg := -1, ""
		s := bufio.NewScanner(bytes.NewReader(e))
		for s.Scan() {
			k, v, _ := strings.Cut(strings.TrimSpace(s.Text()), " ")
			switch k {
			case "version":
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					version = n
				}
			case "options":
				for _, o := range strings.Fields(v) {
					if a, ok := strings.CutPrefix(o, "ostree="); ok {
						arg = a
					}
				}
			}
		}
		if arg != "" && version > best {
			best, bestArg = version, arg
		}
	}
	if bestArg == "" {
		return "", fmt.Errorf("no boot loader entry with ostree= was found (attach the partition labelled boot)")
	}
	return bestArg, nil
}

// bootEntries reads the boot loader entries from the filesystem labelled
// "boot" (RHCOS keeps /boot on its own partition), if there is one.
func (m *Machine) bootEntries(disks []disk) [][]byte {
	var entries [][]byte
	for _, d := range disks {
		if d.fs.Label != "boot" {
			continue
		}
		_, _ = m.probeFor(d, func(dir string) bool {
			files, _ := filepath.Glob(filepath.Join(dir, "loader/entries/*.conf"))
			for _, f := range files {
				if b, err := os.ReadFile(f); err == nil {
					entries = append(entries, b)
				}
			}
			return true
		})
	}
	return entries
}

// ostreeView bind-mounts the chosen deployment on MountSysroot and its
// stateroot's var on MountSysroot/var, so roles see the paths the running
// OS sees. It returns the view's path, or "" for a plain root.
func (m *Machine) ostreeView(env *Env, disks []disk, rw bool) (string, error) {
	root := m.path(MountRoot)
	deploy, varDir, err := ostreeDeployment(root, m.bootEntries(disks))
	if err != nil || deploy == "" {
		return "", err
	}
	if m.Bind == nil {
		return "", fmt.Errorf("OSTree root: no bind mount implementation")
	}
	rel, _ := filepath.Rel(root, deploy)
	if err := m.bind(deploy, MountSysroot, rw); err != nil {
		return "", fmt.Errorf("bind OSTree deployment /%s: %w", rel, err)
	}
	if err := m.bind(varDir, filepath.Join(MountSysroot, "var"), rw); err != nil {
		return "", fmt.Errorf("bind OSTree /var: %w", err)
	}
	fmt.Fprintf(m.Console, "root: OSTree deployment /%s with its /var on %s\n", rel, MountSysroot)
	return m.path(MountSysroot), nil
}

func (m *Machine) bind(source, target string, rw bool) error {
	t := m.path(target)
	if err := os.MkdirAll(t, 0o755); err != nil {
		return err
	}
	if err := m.Bind(source, t); err != nil {
		return err
	}
	m.mounts = append(m.mounts, mounted{dev: source, target: target, rw: rw})
	return nil
}

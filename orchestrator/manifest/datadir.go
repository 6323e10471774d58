package manifest

import (
	"fmt"
	"path/filepath"
	"strings"
)

// discoveredPlaceholders stand for what OpenShift's discovery init container
// writes to /run/etcd/environment at start: the node's IP and DNS names,
// which never bear on the data dir.
const discoveredPlaceholders = "ETCD_IPV4_ADDRESS=192.0.2.1\nETCD_DNS_NAME=etcd.invalid\nETCD_WILDCARD_DNS_NAME=*.invalid\n"

// DataDirOnHost returns the data dir etcd really uses, relative to the
// master's root: its last --data-dir (or ETCD_DATA_DIR), mapped through the
// pod's hostPath volumes. When the etcd command line cannot be read or names
// no data dir, def (the profile's default) is returned. why says which, for
// the "data dir: /rel (why)" line. A data dir that no hostPath volume holds,
// or that is the root itself, is an error: etcd's data would not be where a
// move aside could keep it.
func (m *Manifest) DataDirOnHost(root, nodeName, def string) (rel, why string, err error) {
	inv, err := m.Invocation(Runtime{Root: root, NodeName: nodeName,
		Files: map[string]string{"/run/etcd/environment": discoveredPlaceholders}})
	if err != nil {
		return def, fmt.Sprintf("the profile's; the manifest's etcd command line could not be read: %v", err), nil
	}
	dd := inv.Flags()["data-dir"]
	if dd == "" {
		return def, "the profile's; the manifest gives etcd no --data-dir", nil
	}
	host, ok := inv.HostPath("/", dd)
	if !ok {
		return "", "", fmt.Errorf("the etcd manifest %s gives etcd --data-dir %s, which no hostPath volume of the pod holds: etcd's data would not be on the master's disk; fix the manifest and re-run",
			m.Path, dd)
	}
	rel = strings.TrimPrefix(filepath.Clean(host), "/")
	if rel == "" {
		return "", "", fmt.Errorf("the etcd manifest %s puts etcd's data dir (%s) at the master's root folder: refusing to move the whole root aside", m.Path, dd)
	}
	return rel, "the manifest's --data-dir " + dd, nil
}

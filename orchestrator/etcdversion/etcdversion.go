// Package etcdversion knows which etcd version a master runs and whether a
// data dir restored by etcd-rescue (which links etcd 3.7's restore code)
// opens in it. The restore refuses a version outside the tested range
// before it touches anything: a data dir the cluster's own etcd cannot
// read would fail the recovery at its worst moment.
package etcdversion

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Version is an etcd release, major.minor.patch.
type Version struct {
	Major, Minor, Patch int
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// MinorString is "3.5" for 3.5.17.
func (v Version) MinorString() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// lessMinor orders versions by major and minor only.
func (v Version) lessMinor(o Version) bool {
	return v.Major < o.Major || v.Major == o.Major && v.Minor < o.Minor
}

// Oldest and Newest bound the minor versions whose servers were shown to
// open a restored data dir (the compatibility tests run each one).
var (
	Oldest = Version{3, 3, 0}
	Newest = Version{3, 7, 0}
)

// Range is the tested range as people write it: "3.3–3.7".
func Range() string { return Oldest.MinorString() + "–" + Newest.MinorString() }

var versionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?$`)

// Parse reads "3.5.17", "v3.5.17", "3.5.15-0" (the kubeadm image tag form),
// "v3.6.0-rc.1" or "3.5".
func Parse(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Version{}, fmt.Errorf("%q is not an etcd version: write it like 3.5.17", s)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Patch, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// FromImage reads the version from a container image's tag:
// "registry.k8s.io/etcd:3.5.15-0", "quay.io/coreos/etcd:v3.3.17". An image
// pinned only by digest (as OpenShift's release images are) has no
// version in its name: ok is false.
func FromImage(image string) (v Version, ok bool) {
	ref, _, _ := strings.Cut(image, "@") // drop a digest
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i+1:], "/") { // no tag, or a registry port
		return Version{}, false
	}
	v, err := Parse(ref[i+1:])
	return v, err == nil
}

// Check refuses a version whose server is not known to open a data dir
// restored by etcd-rescue.
func Check(v Version) error {
	switch {
	case v.lessMinor(Oldest):
		return fmt.Errorf("etcd %s is older than the versions etcd-rescue restores for (%s): its server may not open a data dir written by etcd 3.7's restore; "+
			"restore with that version's own `etcdctl snapshot restore` instead, or pass --etcd-version if the master really runs a newer etcd", v, Range())
	case Newest.lessMinor(v):
		return fmt.Errorf("etcd %s is newer than the versions etcd-rescue was tested with (%s): use an etcd-rescue release that supports it, "+
			"or pass --etcd-version if the master really runs an older etcd", v, Range())
	}
	return nil
}

// CheckBackup refuses a backup written by a newer etcd than the one that
// will open it: that is a downgrade, which etcd supports only through its
// own downgrade procedure on a running cluster.
func CheckBackup(server, backup Version) error {
	if server.lessMinor(backup) {
		return fmt.Errorf("the backup was written by etcd %s but the master runs etcd %s: opening it would downgrade the storage; "+
			"restore a backup taken by etcd %s, or set the etcd image in the manifest to %s", backup.MinorString(), server, server.MinorString(), backup.MinorString())
	}
	return nil
}

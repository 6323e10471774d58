package boot

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
)

// FwCfgConfig is where QEMU's -fw_cfg name=opt/com.coreos/config shows up
// once the qemu_fw_cfg module is loaded (CoreOS uses the same name).
const FwCfgConfig = "/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw"

// ConfigLabels are the filesystem labels of a partition that carries the
// config (compared without regard to case).
var ConfigLabels = []string{"config-2", "ignition", "etcd-rescue"}

// configFiles are the names a config partition may hold the config under.
var configFiles = []string{"config.ign", "ignition/config.ign", "etcd-rescue.ign", "openstack/latest/user_data"}

// findConfig looks for the Ignition config, most explicit source first: the
// kernel command line, QEMU fw_cfg, then a labelled partition.
func (m *Machine) findConfig(ctx context.Context) (*ignition.Config, string, error) {
	if u := m.flag(FlagConfigURL); u != "" {
		p, err := fileURL(u)
		if err != nil {
			return nil, "", err
		}
		return m.readConfig(m.path(p), FlagConfigURL+"="+u)
	}
	fw := m.path(FwCfgConfig)
	if _, err := os.Stat(m.path("/sys/firmware/qemu_fw_cfg")); err == nil {
		if _, err := os.Stat(fw); err == nil {
			return m.readConfig(fw, "fw_cfg opt/com.coreos/config")
		}
	}
	// A config partition may show up a moment after its driver loaded.
	deadline := time.Now().Add(m.DeviceWait)
	for {
		for _, d := range m.listDisks() {
			if !labelIsConfig(d.fs.Label) {
				continue
			}
			cfg, src, err := m.configFromPartition(d)
			if err != nil || cfg != nil {
				return cfg, src, err
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil, "", fmt.Errorf("no Ignition config found: give one with QEMU -fw_cfg name=opt/com.coreos/config,file=CONFIG.ign, "+
		"a partition labelled %s holding config.ign, or %s=file:///PATH on the kernel command line (build it with `etcd-rescue ignition`)",
		strings.Join(ConfigLabels, "/"), FlagConfigURL)
}

func (m *Machine) readConfig(path, src string) (*ignition.Config, string, error) {
	raw, err := readLimited(path, ignition.MaxConfigSize)
	if err != nil {
		return nil, src, fmt.Errorf("read ignition config from %s: %w", src, err)
	}
	cfg, err := ignition.Read(raw)
	if err != nil {
		return nil, src, fmt.Errorf("ignition config from %s: %w", src, err)
	}
	return cfg, src, nil
}

// configFromPartition mounts a labelled partition read-only and reads the
// first config file it holds; (nil, "", nil) means it holds none.
func (m *Machine) configFromPartition(d disk) (*ignition.Config, string, error) {
	target := filepath.Join(mountProbe, "config")
	if err := m.mount(d, target, false); err != nil {
		return nil, "", fmt.Errorf("mount config partition %s (label %s): %w", d.name, d.fs.Label, err)
	}
	defer m.unmount(target)
	for _, f := range configFiles {
		p := filepath.Join(m.path(target), f)
		if _, err := os.Stat(p); err == nil {
			return m.readConfig(p, fmt.Sprintf("partition %s (label %s) /%s", d.name, d.fs.Label, f))
		}
	}
	return nil, "", nil
}

func labelIsConfig(l string) bool {
	for _, c := range ConfigLabels {
		if strings.EqualFold(l, c) {
			return true
		}
	}
	return false
}

// fileURL accepts file:///path (or a bare absolute path) and returns the path.
func fileURL(s string) (string, error) {
	if strings.HasPrefix(s, "/") {
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "file" || u.Path == "" {
		return "", fmt.Errorf("%s=%s: the rescue image reads only file:///PATH (it has no network); pass the config by fw_cfg or a config partition otherwise", FlagConfigURL, s)
	}
	return u.Path, nil
}

// readLimited reads at most limit bytes of path: a config on a disk or in
// fw_cfg may be any size, and the rescue image's RAM is small.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d MiB, the most the rescue image reads: refused", path, limit>>20)
	}
	return b, nil
}

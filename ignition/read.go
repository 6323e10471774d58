package ignition

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/vincent-petithory/dataurl"
	"sigs.k8s.io/yaml"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// Limits on what a config may make the rescue image hold in memory. The
// files etcd-rescue reads are a plan, a role, a token and a CA (kilobytes);
// the limits only stop a config that would exhaust the image's RAM.
const (
	// MaxConfigSize bounds the raw config (it may carry the etcd-rescue
	// binary itself as a data: URL).
	MaxConfigSize = 256 << 20
	// MaxFileSize bounds one file under Dir once decoded and decompressed.
	MaxFileSize = 64 << 20
	// MaxFilesSize bounds all files under Dir together.
	MaxFilesSize = 128 << 20
)

// File is one file the config carries.
type File struct {
	Path string
	Mode int
	Data []byte
}

// Config is what the rescue image takes from an Ignition config.
type Config struct {
	// Files are the config's files under Dir, by path.
	Files map[string]File
	// Plan is the parsed, validated plan.
	Plan *plan.Plan
	// Role is the parsed, validated role.
	Role Role
}

// Read parses an Ignition config (spec 3.0 to 3.5) with Ignition's parser and
// extracts the files under Dir, without applying anything else. Only inline
// sources (data: URLs, optionally gzip-compressed) are read: the rescue image
// has no network to fetch from. The plan and the role must be present and
// valid. Files are decompressed as a stream and refused past MaxFileSize
// each and MaxFilesSize together.
func Read(raw []byte) (*Config, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("ignition config is empty")
	}
	if len(raw) > MaxConfigSize {
		return nil, fmt.Errorf("ignition config is %d bytes, more than the %d MiB the rescue image reads: carry large files (the binary) by an https:// source", len(raw), MaxConfigSize>>20)
	}
	cfg, rpt, err := v3_5.ParseCompatibleVersion(raw)
	if err != nil {
		msg := err.Error()
		if s := strings.TrimSpace(rpt.String()); s != "" {
			msg += ": " + s
		}
		return nil, fmt.Errorf("ignition config does not parse: %s", msg)
	}
	out := &Config{Files: map[string]File{}}
	var total int64
	for _, f := range cfg.Storage.Files {
		if !strings.HasPrefix(f.Path, Dir+"/") {
			continue
		}
		data, err := inline(f.Contents.Source, f.Contents.Compression)
		if err != nil {
			return nil, fmt.Errorf("ignition file %s: %w", f.Path, err)
		}
		if total += int64(len(data)); total > MaxFilesSize {
			return nil, fmt.Errorf("ignition files under %s take more than %d MiB together (at %s): refused; they hold a plan, a role, a token and a CA, a few KiB", Dir, MaxFilesSize>>20, f.Path)
		}
		mode := 0o644
		if f.Mode != nil {
			mode = *f.Mode
		}
		out.Files[f.Path] = File{Path: f.Path, Mode: mode, Data: data}
	}
	pf, ok := out.Files[PlanPath]
	if !ok {
		return nil, fmt.Errorf("ignition config has no %s: build it with `etcd-rescue ignition --plan ...` (files: %s)", PlanPath, out.paths())
	}
	if out.Plan, err = plan.Parse(pf.Data); err != nil {
		return nil, fmt.Errorf("plan %s in the ignition config: %w", PlanPath, err)
	}
	rf, ok := out.Files[RolePath]
	if !ok {
		return nil, fmt.Errorf("ignition config has no %s: build it with `etcd-rescue ignition --role ...`", RolePath)
	}
	if err := yaml.UnmarshalStrict(rf.Data, &out.Role); err != nil {
		return nil, fmt.Errorf("role %s in the ignition config: %w", RolePath, err)
	}
	if out.Role.Role == RoleRestore && out.Role.Member == "" {
		out.Role.Member = out.Plan.Survivor
	}
	if err := out.Role.Validate(out.Plan); err != nil {
		return nil, fmt.Errorf("role %s in the ignition config: %w", RolePath, err)
	}
	return out, nil
}

// Token returns the one-time token, if the config carries one.
func (c *Config) Token() []byte {
	return bytes.TrimSpace(c.Files[TokenPath].Data)
}

func (c *Config) paths() string {
	var p []string
	for k := range c.Files {
		p = append(p, k)
	}
	sort.Strings(p)
	if len(p) == 0 {
		return "none under " + Dir
	}
	return strings.Join(p, ", ")
}

func inline(source, compression *string) ([]byte, error) {
	if source == nil {
		return nil, nil
	}
	if !strings.HasPrefix(*source, "data:") {
		return nil, fmt.Errorf("source %.40q is not a data: URL; the rescue image reads only inline contents", *source)
	}
	du, err := dataurl.DecodeString(*source)
	if err != nil {
		return nil, fmt.Errorf("data URL: %w", err)
	}
	data := du.Data
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("content is %d bytes, more than the %d MiB limit per file: refused", len(data), MaxFileSize>>20)
	}
	if compression != nil && *compression != "" {
		if *compression != "gzip" {
			return nil, fmt.Errorf("compression %q is not supported (use gzip or none)", *compression)
		}
		return gunzip(data, MaxFileSize)
	}
	return data, nil
}

// gunzip decompresses as a stream and stops one byte past limit, so a small
// gzip that expands to gigabytes costs no more than limit.
func gunzip(data []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("gzip content expands beyond the %d MiB limit per file: refused", limit>>20)
	}
	return out, nil
}

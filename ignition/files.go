package ignition

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_4/types"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// addFiles adds Options.Files (under Dir, mode 0600) to the config, and
// refuses a config whose member's plan entry names a LUKS file it lacks:
// the rescue image would find the volume and no key.
func addFiles(cfg *types.Config, p *plan.Plan, member string, files map[string][]byte) error {
	var paths []string
	for f := range files {
		if path.Clean(f) != f || !strings.HasPrefix(f, Dir+"/") {
			return fmt.Errorf("file %s: the rescue image reads only files under %s/", f, Dir)
		}
		switch f {
		case PlanPath, RolePath, TokenPath, CACertPath, CAPinPath:
			return fmt.Errorf("file %s is written by the config itself", f)
		}
		paths = append(paths, f)
	}
	sort.Strings(paths)
	for _, f := range paths {
		cfg.Storage.Files = append(cfg.Storage.Files, dataFile(f, files[f], 0o600))
	}
	if m, ok := p.Member(member); ok && m.LUKS != nil {
		for _, f := range []string{m.LUKS.PassphraseFile, m.LUKS.KeyFile} {
			if _, ok := files[f]; f != "" && !ok {
				return fmt.Errorf("the plan's %s luks names %s, which the config does not carry: give it with --file %s=LOCAL-FILE", member, f, f)
			}
		}
	}
	return nil
}

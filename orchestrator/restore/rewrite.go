package restore

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/manifest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

func (r *restore) rewriteManifestStep() steps.Step {
	return steps.Step{
		Name: "rewrite-manifest",
		Describe: func() string {
			return fmt.Sprintf("rewrite %s for a one-member cluster: name %s, initial-cluster %s, initial-cluster-state new",
				r.manifestPath(), r.member.Name, plan.InitialCluster(r.member))
		},
		Check: func(context.Context) (steps.State, error) {
			m, conf, err := r.rewritten()
			if err != nil {
				return steps.ToDo, err
			}
			cur, _ := os.ReadFile(m.Path)
			want, err := m.Bytes()
			if err != nil {
				return steps.ToDo, err
			}
			if bytes.Equal(cur, want) && r.envFileMatches(conf) {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			m, conf, err := r.rewritten()
			if err != nil {
				return err
			}
			if conf != nil {
				// Copied aside by keep-old-state when it existed; recorded
				// as created when not, so an undo takes it away.
				if err := r.keeper().BeforeWrite(r.abs(r.prof.EnvFile)); err != nil {
					return err
				}
				if err := atomicfile.WriteFile(r.abs(r.prof.EnvFile), conf, 0o644); err != nil {
					return err
				}
			}
			return m.WriteTo(m.Path)
		},
	}
}

// manifestPath is where the etcd manifest is now: in the kubelet's folder,
// or, while an online restore has the static pods stopped, beside the
// other stopped manifests.
func (r *restore) manifestPath() string {
	if p := r.stoppedManifest(r.prof.Manifest); p != "" {
		return p
	}
	return r.abs(r.prof.Manifest)
}

// rewritten returns the manifest as it must be after the step, and for
// OpenShift the environment file etcd's start script sources.
func (r *restore) rewritten() (*manifest.Manifest, []byte, error) {
	m, err := manifest.Load(r.manifestPath())
	if err != nil {
		return nil, nil, err
	}
	c := manifest.Member{Name: r.member.Name, InitialCluster: plan.InitialCluster(r.member), State: "new", PeerURL: r.member.PeerURL}
	if r.prof.Name == profile.OpenShift43 {
		// As the 4.3 restore does: DNS discovery would bring back the old
		// three-member cluster.
		if _, err := m.RemoveScriptFlag("discovery-srv"); err != nil {
			return nil, nil, err
		}
		for _, kv := range [][2]string{{"ETCD_NAME", c.Name}, {"ETCD_INITIAL_CLUSTER", c.InitialCluster}, {"ETCD_INITIAL_CLUSTER_STATE", c.State}} {
			if err := m.SetEnv(kv[0], kv[1]); err != nil {
				return nil, nil, err
			}
		}
	}
	if err := m.SetMember(c); err != nil {
		return nil, nil, err
	}
	if r.prof.EnvFile == "" {
		return m, nil, nil
	}
	cur, err := os.ReadFile(r.abs(r.prof.EnvFile))
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, err
	}
	conf, err := m.WithRecoverBlock(cur, c)
	return m, conf, err
}

func (r *restore) envFileMatches(want []byte) bool {
	if want == nil {
		return true
	}
	cur, err := os.ReadFile(r.abs(r.prof.EnvFile))
	return err == nil && bytes.Equal(cur, want)
}

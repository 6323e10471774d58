package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/live"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// stoppedDir holds the static pod manifests while an online restore has
// them stopped (the kubelet stops a pod whose manifest leaves its folder).
func (r *restore) stoppedDir() string {
	return filepath.Join(r.abs(journal.Dir), "stopped-manifests")
}

// stoppedManifest returns the stopped copy of a manifest, or "".
func (r *restore) stoppedManifest(rel string) string {
	p := filepath.Join(r.stoppedDir(), filepath.Base(rel))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// staticPods lists the manifests in the kubelet's folder, etcd last, in
// the order they are stopped (the seed's: scheduler, controller manager,
// apiserver, etcd).
func (r *restore) staticPods(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	order := map[string]int{}
	for i, p := range r.prof.StaticPods {
		order[filepath.Base(p)] = i + 1
	}
	order[filepath.Base(r.prof.Manifest)] = len(r.prof.StaticPods) + 2
	rank := func(n string) int {
		if v, ok := order[n]; ok {
			return v
		}
		return 0
	}
	// stable insertion sort: unknown pods first, then the known order
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && rank(names[j]) < rank(names[j-1]); j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	return names
}

// podRef reads a static pod's namespace and name from its manifest.
func podRef(path string) live.PodRef {
	name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".yaml"), ".yml")
	ref := live.PodRef{Namespace: "kube-system", Name: name}
	b, err := os.ReadFile(path)
	if err != nil {
		return ref
	}
	var pod struct {
		Metadata struct{ Name, Namespace string } `json:"metadata"`
	}
	if yaml.Unmarshal(b, &pod) == nil && pod.Metadata.Name != "" {
		ref.Name = pod.Metadata.Name
		if pod.Metadata.Namespace != "" {
			ref.Namespace = pod.Metadata.Namespace
		}
	}
	return ref
}

func (r *restore) stopStaticPodsStep() steps.Step {
	dir := r.abs(r.prof.ManifestDir)
	return steps.Step{
		Name: "stop-static-pods",
		Describe: func() string {
			return fmt.Sprintf("move the static pod manifests %v to %s and wait until their containers are gone", r.staticPods(dir), r.stoppedDir())
		},
		Check: func(context.Context) (steps.State, error) {
			if r.restoreCommitted() || (r.j.StepDone("stop-static-pods") && len(r.staticPods(dir)) == 0) {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error {
			if err := os.MkdirAll(r.stoppedDir(), 0o700); err != nil {
				return err
			}
			var pods []live.PodRef
			for _, n := range r.staticPods(dir) {
				pods = append(pods, podRef(filepath.Join(dir, n)))
			}
			// A resumed run finds some manifests moved already.
			for _, n := range r.staticPods(r.stoppedDir()) {
				pods = append(pods, podRef(filepath.Join(r.stoppedDir(), n)))
			}
			for _, n := range r.staticPods(dir) {
				fmt.Fprintf(r.out, "    ..stopping %s\n", n)
				if err := os.Rename(filepath.Join(dir, n), filepath.Join(r.stoppedDir(), n)); err != nil {
					return err
				}
			}
			if err := atomicfile.SyncDir(dir); err != nil {
				return err
			}
			return r.o.Host.WaitPodsGone(ctx, pods)
		},
	}
}

func (r *restore) stopKubeletStep() steps.Step {
	return steps.Step{
		Name:     "stop-kubelet",
		Describe: func() string { return "stop kubelet.service" },
		Check: func(context.Context) (steps.State, error) {
			if r.restoreCommitted() {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error { return r.o.Host.StopKubelet(ctx) },
	}
}

func (r *restore) startKubeletStep() steps.Step {
	return steps.Step{
		Name:     "start-kubelet",
		Describe: func() string { return "start kubelet.service" },
		Check: func(context.Context) (steps.State, error) {
			if r.j.StepDone("start-kubelet") {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(ctx context.Context) error { return r.o.Host.StartKubelet(ctx) },
	}
}

func (r *restore) startStaticPodsStep() steps.Step {
	dir := r.abs(r.prof.ManifestDir)
	return steps.Step{
		Name: "start-static-pods",
		Describe: func() string {
			return fmt.Sprintf("move the static pod manifests %v back to %s", r.staticPods(r.stoppedDir()), dir)
		},
		Check: func(context.Context) (steps.State, error) {
			if len(r.staticPods(r.stoppedDir())) == 0 {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			names := r.staticPods(r.stoppedDir())
			// start in reverse stop order: etcd first
			for i := len(names) - 1; i >= 0; i-- {
				fmt.Fprintf(r.out, "    ..starting %s\n", names[i])
				if err := os.Rename(filepath.Join(r.stoppedDir(), names[i]), filepath.Join(dir, names[i])); err != nil {
					return err
				}
			}
			return atomicfile.SyncDir(dir)
		},
	}
}

package restore

import "github.com/etcd-rescue/etcd-rescue/orchestrator/steps"

// Steps lists a prepared restore's steps, for tests that call them one by one.
func (x *Restore) Steps() []steps.Step { return x.r.steps() }

package main

// The rescue image's roles (restore, join) register themselves with the
// boot when their packages are linked in.
import _ "github.com/etcd-rescue/etcd-rescue/orchestrator/roles"

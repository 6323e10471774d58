package main

// The rescue image's roles (restore, join, verify) register themselves with
// the boot when package roles is linked in.
import _ "github.com/etcd-rescue/etcd-rescue/orchestrator/roles"

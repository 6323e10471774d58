// Package version holds the build's version, set at link time with
// -ldflags "-X github.com/etcd-rescue/etcd-rescue/internal/version.Version=…".
package version

// Version is the etcd-rescue version.
var Version = "0.1.0-dev"

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the etcd-rescue binary built for the tests that run it as a
// separate process (to kill it, or to read its exit code).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "etcd-rescue-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "etcd-rescue")
	cmd := exec.Command("go", "build", "-o", binary, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		panic("build etcd-rescue: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

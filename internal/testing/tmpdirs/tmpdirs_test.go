package tmpdirs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// deadPID is the PID of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestMakeSweepsFoldersOfEndedProcesses: the first folder a process makes
// removes the ones a process that ended left, and keeps those of a
// running process and those named otherwise.
func TestMakeSweepsFoldersOfEndedProcesses(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	const prefix = "etcd-rescue-tmpdirs-test-"
	dead := filepath.Join(tmp, prefix+"pid"+strconv.Itoa(deadPID(t))+"-123")
	live := filepath.Join(tmp, prefix+"pid"+strconv.Itoa(os.Getppid())+"-456")
	other := filepath.Join(tmp, prefix+"789")
	for _, d := range []string{dead, live, other} {
		if err := os.MkdirAll(filepath.Join(d, "member", "wal"), 0o700); err != nil {
			t.Fatal(err)
		}
	}

	made, err := Make(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if want := prefix + "pid" + strconv.Itoa(os.Getpid()) + "-"; filepath.Dir(made) != tmp || !strings.HasPrefix(filepath.Base(made), want) {
		t.Errorf("made %s, want %s/%s…", made, tmp, want)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the folder of an ended process is still there (%v)", err)
	}
	for _, d := range []string{live, other, made} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}

	// Later folders of the same process do not sweep again: the process's
	// own are in use, and so may be a new one left by a process that ends now.
	dead2 := filepath.Join(tmp, prefix+"pid"+strconv.Itoa(deadPID(t))+"-1")
	if err := os.Mkdir(dead2, 0o700); err != nil {
		t.Fatal(err)
	}
	again, err := Make(prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{made, again, dead2} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}

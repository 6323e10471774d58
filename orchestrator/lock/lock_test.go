package lock

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// holdEnv makes the test binary a second process that holds a root's lock
// until its stdin closes.
const holdEnv = "ETCD_RESCUE_LOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if root := os.Getenv(holdEnv); root != "" {
		l, err := Acquire(root)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("held")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = l.Release()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// snapshot lists a folder's entries and its own modification time, to show
// that a refused Acquire wrote nothing.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return fmt.Sprintf("%s %v", fi.ModTime().Format(time.RFC3339Nano), names)
}

func TestSecondProcessIsRefused(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "etc"), []byte("x"), 0o644)
	before := snapshot(t, root)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+root)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "held\n" {
		t.Fatalf("holder said %q", line)
	}

	_, err = Acquire(root)
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("Acquire while held: err = %v, want a HeldError", err)
	}
	if held.PID != cmd.Process.Pid {
		t.Errorf("holder pid = %d, want %d", held.PID, cmd.Process.Pid)
	}
	if d := held.Started.Sub(start); d < -2*time.Second || d > 10*time.Second {
		t.Errorf("holder started at %s, the test started it at %s", held.Started, start)
	}
	msg := err.Error()
	for _, want := range []string{fmt.Sprintf("pid %d", cmd.Process.Pid), "started at", root, "wait for it or stop it"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if after := snapshot(t, root); after != before {
		t.Errorf("the refused Acquire changed the root: %s -> %s", before, after)
	}

	// The holder ends: the lock is free again.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	l, err := Acquire(root)
	if err != nil {
		t.Fatalf("Acquire after the holder ended: %v", err)
	}
	l.Release()
	if after := snapshot(t, root); after != before {
		t.Errorf("lock and release changed the root: %s -> %s", before, after)
	}
}

func TestKilledHolderLeavesNoLock(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+root)
	stdout, _ := cmd.StdoutPipe()
	pr, pw, _ := os.Pipe() // never closed before the kill: the holder waits
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "held\n" {
		t.Fatalf("holder said %q", line)
	}
	if _, err := Acquire(root); err == nil {
		t.Fatal("Acquire succeeded while held")
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(root)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	l.Release()
}

func TestSameProcessTwice(t *testing.T) {
	root := t.TempDir()
	l, err := Acquire(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(root)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() {
		t.Fatalf("second Acquire: err = %v, want held by pid %d", err, os.Getpid())
	}
	// Another root is independent.
	other, err := Acquire(t.TempDir())
	if err != nil {
		t.Fatalf("another root: %v", err)
	}
	other.Release()
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	l2, err := Acquire(root)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

func TestBadRoot(t *testing.T) {
	dir := t.TempDir()
	if _, err := Acquire(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing root locked")
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Acquire(file); err == nil {
		t.Error("a file locked as a root")
	}
}

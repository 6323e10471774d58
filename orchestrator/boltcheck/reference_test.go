package boltcheck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// referenceTimeout bounds bbolt's check of one file: a healthy test file
// takes milliseconds, and the fuzzer gives each input at most 10s.
const referenceTimeout = 5 * time.Second

// referenceEnv names the file a child test process checks with bbolt.
const referenceEnv = "BOLTCHECK_TXCHECK"

func TestMain(m *testing.M) {
	if p := os.Getenv(referenceEnv); p != "" {
		os.Exit(runTxCheck(p))
	}
	code := m.Run()
	removeSharedFiles()
	os.Exit(code)
}

// runTxCheck is the child's side of txCheck: bbolt.Open read-only, then
// Tx.Check. It prints "OK" or "ERROR: first error"; a crash (a fault in
// bbolt's mmap, a stack overflow on a page loop) prints neither.
func runTxCheck(path string) int {
	// Damaged counts make bbolt allocate or recurse without bound: fail
	// fast instead of taking the machine's memory.
	syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: 4 << 30, Max: 4 << 30})
	debug.SetMaxStack(4 << 20)
	defer func() {
		if p := recover(); p != nil {
			fmt.Printf("ERROR: panic: %v\n", p)
			os.Exit(0)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		fmt.Printf("ERROR: open: %v\n", err)
		return 0
	}
	defer db.Close()
	var first error
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			if first == nil {
				first = e
			}
			n++
		}
		return nil
	})
	switch {
	case err != nil:
		fmt.Printf("ERROR: view: %v\n", err)
	case first != nil:
		fmt.Printf("ERROR: %d errors, the first: %v\n", n, first)
	default:
		fmt.Println("OK")
	}
	return 0
}

// txCheck is the reference: bbolt's own Open and Tx.Check on a copy of
// path, in a child process, because on some damage bbolt faults on its
// mmap or loops for ever instead of panicking. Anything but "OK" (an
// error, a panic, a crash, no answer within referenceTimeout) means bbolt rejects
// the file; detail says how.
func txCheck(t testing.TB, path string) (ok bool, detail string) {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "copy.db")
	copyFile(t, path, cp)
	ctx, cancel := context.WithTimeout(context.Background(), referenceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), referenceEnv+"="+cp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	s := strings.TrimSpace(out.String())
	switch {
	case err == nil && s == "OK":
		return true, "OK"
	case err == nil && strings.HasPrefix(s, "ERROR: "):
		return false, s
	case ctx.Err() != nil:
		return false, fmt.Sprintf("no answer within %s (a page loop, or a damaged overflow count it walks page by page)", referenceTimeout)
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return false, fmt.Sprintf("crashed (%v): %s", err, s)
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// agree checks path with Check and with bbolt and fails the test when they
// disagree, except where Check rejects by a rule bbolt does not enforce
// (Format, Etcd). It returns Check's error.
func agree(t testing.TB, path string) error {
	t.Helper()
	_, err := Check(context.Background(), path, Options{})
	if err != nil && strings.Contains(err.Error(), "a bug in boltcheck") {
		t.Fatalf("Check panicked: %v", err)
	}
	refOK, detail := txCheck(t, path)
	kind, isCheckErr := KindOf(err)
	switch {
	case err != nil && !isCheckErr:
		t.Fatalf("Check failed to read the file: %v", err)
	case !refOK && err == nil:
		t.Fatalf("bbolt rejects the file (%s) but Check accepts it", detail)
	case refOK && err != nil && kind == Structure:
		t.Fatalf("bbolt accepts the file but Check rejects it by a rule it says bbolt shares: %v", err)
	}
	return err
}

package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

// TestExpiredTokenNamesARealCommand runs the command the expired-token
// refusal tells the operator to run, with the flags it names.
func TestExpiredTokenNamesARealCommand(t *testing.T) {
	m := regexp.MustCompile("`etcd-rescue ([^`]*)`").FindStringSubmatch(signer.ErrTokenExpired.Error())
	if m == nil {
		t.Fatalf("ErrTokenExpired names no command: %q", signer.ErrTokenExpired)
	}
	args := strings.Fields(m[1])
	var sub, flags []string
	for _, a := range args {
		if strings.HasPrefix(a, "--") {
			flags = append(flags, a)
		} else if len(flags) == 0 {
			sub = append(sub, a)
		}
	}
	out, err := exec.Command(binary, append(sub, "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", strings.Join(sub, " "), err, out)
	}
	if !strings.Contains(string(out), "Usage:\n  etcd-rescue "+strings.Join(sub, " ")) {
		t.Fatalf("etcd-rescue %s is not a command:\n%s", strings.Join(sub, " "), out)
	}
	for _, f := range flags {
		if !strings.Contains(string(out), "  "+f+" ") {
			t.Errorf("etcd-rescue %s has no %s flag:\n%s", strings.Join(sub, " "), f, out)
		}
	}
}

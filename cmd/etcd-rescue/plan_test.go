package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const goodPlan = `version: 1
cluster: {name: ocp, domain: ocp.example.com}
survivor: m0
members:
- {name: m0, ip: 10.0.0.10, dnsName: etcd-0.ocp.example.com, peerURL: "https://10.0.0.10:2380"}
- {name: m1, ip: 10.0.0.11, dnsName: etcd-1.ocp.example.com, peerURL: "https://10.0.0.11:2380"}
signer: {address: "https://10.0.0.10:9943", ttl: 90m}
`

// runPlan runs the built binary: the exit code is part of what is tested.
func runPlan(t *testing.T, content string, args ...string) (string, string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(binary, append(append([]string{"plan"}, args...), path)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestPlanValidate(t *testing.T) {
	out, _, code := runPlan(t, goodPlan, "--validate")
	if code != 0 || !strings.Contains(out, "plan OK: 2 members, survivor m0") || !strings.Contains(out, "member m1: peer https://10.0.0.11:2380, joins") {
		t.Fatalf("good plan: exit %d\n%s", code, out)
	}
	out, _, code = runPlan(t, goodPlan)
	if code != 0 || strings.Contains(out, "plan OK") || !strings.Contains(out, "restore: etcd-rescue restore --name m0") {
		t.Fatalf("explain without --validate: exit %d\n%s", code, out)
	}
	withNet := strings.Replace(goodPlan, `peerURL: "https://10.0.0.11:2380"}`, `peerURL: "https://10.0.0.11:2380", network: {interface: {mac: "52:54:00:00:00:01"}, vlan: {id: 7}, gateway: 10.0.0.1}}`, 1)
	out, _, code = runPlan(t, withNet)
	if code != 0 || !strings.Contains(out, "    network in the rescue image: NIC 52:54:00:00:00:01 vlan 7 → 10.0.0.11/24 gw 10.0.0.1\n") ||
		!strings.Contains(out, "    network in the rescue image: 10.0.0.10 as the master's own configuration has it") {
		t.Fatalf("explain a member's network: exit %d\n%s", code, out)
	}

	bad := strings.NewReplacer(
		`"https://10.0.0.11:2380"`, `"https://10.0.0.11:99999/etcd"`,
		"ip: 10.0.0.11", "ip: 10.0.0.10",
		"ttl: 90m", "ttl: -5m",
		"name: m1,", `name: "m1,x",`,
	).Replace(goodPlan)
	out, errOut, code := runPlan(t, bad, "--validate")
	if code == 0 {
		t.Fatalf("bad plan: exit 0\n%s", out)
	}
	for _, want := range []string{"has a path", "share the ip 10.0.0.10", "signer.ttl -5m0s is negative", `member name "m1,x"`} {
		if !strings.Contains(out, "  - ") || !strings.Contains(out, want) {
			t.Errorf("problem list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "plan OK") || !strings.Contains(errOut, "4 problem(s)") {
		t.Errorf("bad plan: stdout\n%s\nstderr\n%s", out, errOut)
	}
	// Without --validate a bad plan is refused too, pointing at --validate.
	if _, errOut, code := runPlan(t, bad); code == 0 || !strings.Contains(errOut, "plan --validate lists every problem") {
		t.Errorf("bad plan without --validate: exit %d, stderr %s", code, errOut)
	}
	// Not YAML at all: one problem, still a clear exit.
	if out, _, code := runPlan(t, "version: [", "--validate"); code == 0 || !strings.Contains(out, "decode") {
		t.Errorf("not YAML: exit %d\n%s", code, out)
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/kubetest"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/syncbuf"
)

// TestFinish runs the cluster side of a recovery against a real
// kube-apiserver: the dry run changes nothing and shows the verdicts; the
// run approves exactly the new master's two CSRs (not an intruder's),
// waits for its node to become Ready (the test plays its kubelet), writes
// the etcd-N records through the hosts-file hook and finds no signer; a
// second run skips what is done.
func TestFinish(t *testing.T) {
	s := kubetest.Start(t)
	s.AllowCSRCreation(t)
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-0", InternalIP: "10.0.0.10", Ready: true})
	s.CreateNode(t, kubetest.NodeSpec{Name: "master-1", InternalIP: "10.0.0.11", Ready: false})
	client := clientCSR(t, s, "master-1")
	serving := servingCSR(t, s, "master-1", "10.0.0.11")
	intruder := clientCSR(t, s, "intruder")
	state := func(name string) string { return csrState(t, s, name) }
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(`version: 1
cluster: {name: ocp, domain: ocp.example.com}
survivor: etcd-member-master-0
members:
- {name: etcd-member-master-0, host: master-0, dnsName: etcd-0.ocp.example.com, peerURL: "https://etcd-0.ocp.example.com:2380"}
- {name: etcd-member-master-1, host: master-1, dnsName: etcd-1.ocp.example.com, peerURL: "https://etcd-1.ocp.example.com:2380"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"finish", "--kubeconfig", s.Kubeconfig, "--plan", planFile, "--lookup=false",
		"--dns-hook", binary + " dns-hook hosts-file --file " + hosts, "--interval", "200ms", "--timeout", "60s"}

	out, ok := runCLI(t, append(args, "--dry-run")...)
	for _, want := range []string{"wait-api: skipped: already done", "would approve", `node "intruder" is not one of the planned nodes`,
		"approve-csrs: would run", "wait-nodes: would run", "remove-signer: would run", "FINISH-DRY-RUN"} {
		if !ok || !strings.Contains(out, want) {
			t.Fatalf("dry run lacks %q:\n%s", want, out)
		}
	}
	if state(client.Name) != "pending" || state(serving.Name) != "pending" {
		t.Fatal("the dry run approved a CSR")
	}
	if b, _ := os.ReadFile(hosts); strings.Contains(string(b), "etcd-1") {
		t.Fatal("the dry run ran the DNS hook")
	}

	// The run; the test plays master-1's kubelet, which turns Ready once
	// its CSRs are approved.
	var log syncbuf.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for state(client.Name) != "approved" || state(serving.Name) != "approved" {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the new master's CSRs were not approved:\n%s", log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.SetNodeReady(t, "master-1", true)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("finish: %v\n%s", err, log.String())
		}
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("finish did not end:\n%s", log.String())
	}
	t.Logf("$ etcd-rescue finish\n%s", log.String())
	if !strings.Contains(log.String(), "FINISH-OK masters Ready: master-0, master-1") {
		t.Fatalf("no FINISH-OK:\n%s", log.String())
	}
	if state(intruder.Name) != "pending" {
		t.Fatal("finish approved the intruder's CSR")
	}
	b, err := os.ReadFile(hosts)
	if err != nil || !strings.Contains(string(b), "10.0.0.11") || !strings.Contains(string(b), "etcd-1.ocp.example.com") {
		t.Fatalf("hosts file after the DNS hook (%v):\n%s", err, b)
	}

	out, ok = runCLI(t, args...)
	for _, want := range []string{"wait-api: skipped: already done", "approve-csrs: skipped: already done", "wait-nodes: skipped: already done", "FINISH-OK"} {
		if !ok || !strings.Contains(out, want) {
			t.Fatalf("second run lacks %q:\n%s", want, out)
		}
	}
}

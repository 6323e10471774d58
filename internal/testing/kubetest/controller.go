package kubetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ControllerManagerPath returns where the kube-controller-manager binary
// is expected (ETCD_RESCUE_KUBE_CONTROLLER_MANAGER overrides it).
func ControllerManagerPath() string {
	return binaryPath("kube-controller-manager", "ETCD_RESCUE_KUBE_CONTROLLER_MANAGER")
}

// StartSigner runs a kube-controller-manager with only the CSR signing
// controller, signing with the server's CA, so approved kubelet CSRs get
// their certificate as in a cluster. It stops at test cleanup.
func (s *Server) StartSigner(t testing.TB) {
	t.Helper()
	bin := ControllerManagerPath()
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("kube-controller-manager %s not found at %s: build it once with `make kube-apiserver` (it builds both; cached outside the repository), or point ETCD_RESCUE_KUBE_CONTROLLER_MANAGER at one", Version, bin)
	}
	logFile := filepath.Join(s.Dir, "kube-controller-manager.log")
	log, err := os.Create(logFile)
	must(t, err)
	cmd := exec.Command(bin,
		"--kubeconfig="+s.Kubeconfig,
		"--controllers=csrsigning",
		"--cluster-signing-cert-file="+s.CAFile,
		"--cluster-signing-key-file="+s.CAKeyFile,
		"--cluster-signing-duration=24h",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--v=1",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	proc := watch(cmd, log)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			t.Logf("kube-controller-manager log (last lines of %s):\n%s", logFile, strings.Join(lines, "\n"))
		}
		proc.stop(15 * time.Second)
	})
	// Give it a moment to fail on bad flags.
	select {
	case <-proc.done:
		b, _ := os.ReadFile(logFile)
		t.Fatalf("kube-controller-manager exited at start: %v\n%s", proc.err, b)
	case <-time.After(500 * time.Millisecond):
	}
	t.Logf("kube-controller-manager %s signing CSRs with %s", Version, s.CAFile)
}

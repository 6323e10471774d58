package kubetest

import (
	"io"
	"os/exec"
	"syscall"
	"time"
)

// process watches a started server process. Its exit can be waited for
// any number of times (the start-up check and the cleanup both wait for
// it; a channel that carries the exit once would leave the second waiting
// forever).
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's error, set before done is closed
}

// watch starts waiting for cmd, closing log once it has exited.
func watch(cmd *exec.Cmd, log io.Closer) *process {
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p
}

// stop sends SIGTERM, and SIGKILL if the process is still there after
// grace; it returns once the process has exited.
func (p *process) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

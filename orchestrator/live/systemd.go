package live

import (
	"context"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// KubeletUnit is the kubelet's systemd unit.
const KubeletUnit = "kubelet.service"

// Systemd starts and stops units through systemd's D-Bus API.
type Systemd struct {
	// Dial opens the bus; nil means the system bus.
	Dial func(ctx context.Context) (*sddbus.Conn, error)
}

func (s *Systemd) conn(ctx context.Context) (*sddbus.Conn, error) {
	if s.Dial != nil {
		return s.Dial(ctx)
	}
	return sddbus.NewSystemConnectionContext(ctx)
}

// DialAddress returns a Dial function for a D-Bus address (tests use a
// private bus).
func DialAddress(addr string) func(ctx context.Context) (*sddbus.Conn, error) {
	return func(ctx context.Context) (*sddbus.Conn, error) {
		return sddbus.NewConnection(func() (*godbus.Conn, error) {
			c, err := godbus.Dial(addr)
			if err != nil {
				return nil, err
			}
			if err := c.Auth(nil); err != nil {
				c.Close()
				return nil, err
			}
			if err := c.Hello(); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		})
	}
}

// StopUnit stops a unit and waits for the job to finish.
func (s *Systemd) StopUnit(ctx context.Context, unit string) error {
	return s.job(ctx, "stop", unit, func(c *sddbus.Conn, ch chan<- string) (int, error) {
		return c.StopUnitContext(ctx, unit, "replace", ch)
	})
}

// StartUnit reloads unit files (as the 4.3 restore does before starting
// the kubelet) and starts a unit, waiting for the job to finish.
func (s *Systemd) StartUnit(ctx context.Context, unit string) error {
	return s.job(ctx, "start", unit, func(c *sddbus.Conn, ch chan<- string) (int, error) {
		if err := c.ReloadContext(ctx); err != nil {
			return 0, fmt.Errorf("daemon-reload: %w", err)
		}
		return c.StartUnitContext(ctx, unit, "replace", ch)
	})
}

func (s *Systemd) job(ctx context.Context, verb, unit string, call func(*sddbus.Conn, chan<- string) (int, error)) error {
	c, err := s.conn(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %w", err)
	}
	defer c.Close()
	ch := make(chan string, 1)
	if _, err := call(c, ch); err != nil {
		return fmt.Errorf("%s %s: %w", verb, unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: job ended %q", verb, unit, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", verb, unit, ctx.Err())
	}
}

// Host is a live master: systemd for the kubelet, the CRI for containers.
type Host struct {
	Systemd *Systemd
	CRI     *CRI
}

// StopKubelet stops kubelet.service.
func (h *Host) StopKubelet(ctx context.Context) error { return h.Systemd.StopUnit(ctx, KubeletUnit) }

// StartKubelet starts kubelet.service.
func (h *Host) StartKubelet(ctx context.Context) error { return h.Systemd.StartUnit(ctx, KubeletUnit) }

// WaitPodsGone waits until the pods' containers are gone.
func (h *Host) WaitPodsGone(ctx context.Context, pods []PodRef) error {
	return h.CRI.WaitPodsGone(ctx, pods)
}

//go:build !linux

package netup

import (
	"context"
	"errors"
	"time"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/netconf"
)

func apply(context.Context, *netconf.Network, LoadModules, time.Duration) (string, error) {
	return "", errors.New("configuring a network needs Linux")
}

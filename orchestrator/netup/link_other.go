//go:build !linux

package netup

import (
	"errors"
	"net"
)

func linkUp(string, *net.IPNet) error {
	return errors.New("configuring a network interface needs Linux")
}

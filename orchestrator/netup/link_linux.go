package netup

import (
	"errors"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkUp adds addr (when not nil) to the interface and sets it up. An
// address the interface already has is fine.
func linkUp(name string, addr *net.IPNet) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if addr != nil {
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: addr}); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	return netlink.LinkSetUp(l)
}

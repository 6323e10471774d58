package boot

import (
	"context"
	"fmt"
)

// bringUpNetwork runs Machine.Network after the root and the backup are
// mounted (the master's own network configuration is on its root). A
// failure is reported and the role runs without network.
func (m *Machine) bringUpNetwork(ctx context.Context, env *Env) {
	if m.Network == nil {
		return
	}
	load := func(names ...string) error {
		if m.coldplug == nil {
			return nil // no module index: the modules are built in
		}
		return m.coldplug.LoadModules(names...)
	}
	if err := m.Network(ctx, env, load); err != nil {
		fmt.Fprintf(m.Console, "network: %s: the role runs without network\n", oneLine(err))
	}
}

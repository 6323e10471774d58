package boot

import (
	"fmt"
	"os"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/volumes"
)

// Kernel command line flags that give a LUKS key.
const (
	// FlagLUKSPassphrase=TEXT is a LUKS passphrase (no spaces; it shows
	// in /proc/cmdline, so prefer the plan's luks fields).
	FlagLUKSPassphrase = "etcd-rescue.luks.passphrase"
	// FlagLUKSKeyFile=PATH is a LUKS key file: a file of the Ignition
	// config, else of the image.
	FlagLUKSKeyFile = "etcd-rescue.luks.keyfile"
)

// luksKeyHelp says how to give a LUKS key, in the error for a volume none
// opens.
var luksKeyHelp = "give its passphrase in a file of the Ignition config named by the plan's members[].luks.passphraseFile " +
	"(or a key file with luks.keyFile), or " + FlagLUKSPassphrase + "=TEXT or " + FlagLUKSKeyFile + "=PATH on the kernel command line"

// volumeActivator prepares the activation of RAID, LUKS and LVM volumes:
// read-only unless the role writes the master's root, with the LUKS keys
// the plan and the kernel command line give.
func (m *Machine) volumeActivator(env *Env, spec roleSpec) *volumes.Activator {
	a := &volumes.Activator{
		Root:     m.Root,
		Console:  m.Console,
		ReadOnly: !spec.writableRoot || env.DryRun,
		Keys:     m.luksKeys(env),
		KeyHelp:  luksKeyHelp,
	}
	if m.coldplug != nil {
		a.LoadModules = m.coldplug.LoadModules
	}
	return a
}

// luksKeys collects the LUKS keys: the member's plan entry (files of the
// Ignition config), then the kernel command line. A key that is named but
// missing is reported, not fatal: another key may open the volume.
func (m *Machine) luksKeys(env *Env) []volumes.Key {
	var keys []volumes.Key
	fromConfig := func(field, p string, passphrase bool) {
		if p == "" {
			return
		}
		f, ok := env.Files[p]
		if !ok {
			fmt.Fprintf(m.Console, "luks: %s %s is not among the Ignition config's files: that key is not tried\n", field, p)
			return
		}
		data := f.Data
		if passphrase {
			data = trimNewline(data)
		}
		keys = append(keys, volumes.Key{Source: field + " " + p, Data: data})
	}
	if l := env.Member.LUKS; l != nil {
		fromConfig("members[].luks.passphraseFile", l.PassphraseFile, true)
		fromConfig("members[].luks.keyFile", l.KeyFile, false)
	}
	if v := m.flag(FlagLUKSPassphrase); v != "" {
		keys = append(keys, volumes.Key{Source: FlagLUKSPassphrase + "= on the kernel command line", Data: []byte(v)})
	}
	if p := m.flag(FlagLUKSKeyFile); p != "" {
		if f, ok := env.Files[p]; ok {
			keys = append(keys, volumes.Key{Source: FlagLUKSKeyFile + "=" + p + " (Ignition config)", Data: f.Data})
		} else if b, err := os.ReadFile(m.path(p)); err == nil {
			keys = append(keys, volumes.Key{Source: FlagLUKSKeyFile + "=" + p, Data: b})
		} else {
			fmt.Fprintf(m.Console, "luks: %s=%s: neither a file of the Ignition config nor of the image: that key is not tried\n", FlagLUKSKeyFile, p)
		}
	}
	return keys
}

// trimNewline drops one trailing newline: a passphrase file written with
// echo has one, and a typed passphrase does not.
func trimNewline(b []byte) []byte {
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	return []byte(s)
}

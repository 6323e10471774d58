package plan

import (
	"fmt"
	"path"
	"strings"
)

// LUKSFileDir is where the files the LUKS fields name must be: the
// Ignition config's files under it reach the rescue image.
const LUKSFileDir = "/etc/etcd-rescue/"

// LUKS names the files of the Ignition config that unlock the master's LUKS
// volumes in the rescue image (its root, its backup volume). Each key is
// tried on each LUKS volume.
type LUKS struct {
	// PassphraseFile holds the passphrase (one trailing newline is not
	// part of it).
	PassphraseFile string `json:"passphraseFile,omitempty"`
	// KeyFile holds a key file: every byte of it is the key.
	KeyFile string `json:"keyFile,omitempty"`
}

// check refuses a LUKS entry that names no file, or a file the Ignition
// config cannot carry to the rescue image.
func (l *LUKS) check(where string) []error {
	if l == nil {
		return nil
	}
	if l.PassphraseFile == "" && l.KeyFile == "" {
		return []error{fmt.Errorf("%s luks names no file: give passphraseFile or keyFile (a file under %s in the Ignition config), or leave luks out", where, LUKSFileDir)}
	}
	var errs []error
	for _, f := range []struct{ field, p string }{{"passphraseFile", l.PassphraseFile}, {"keyFile", l.KeyFile}} {
		if f.p == "" {
			continue
		}
		if path.Clean(f.p) != f.p || !strings.HasPrefix(f.p, LUKSFileDir) || len(f.p) == len(LUKSFileDir) {
			errs = append(errs, fmt.Errorf("%s luks.%s %q is not a file under %s: the rescue image reads only the Ignition config's files there", where, f.field, f.p, LUKSFileDir))
		}
	}
	return errs
}

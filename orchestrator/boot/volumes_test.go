package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
)

// TestLUKSKeys collects the keys in order: the plan's files (a
// passphrase loses its trailing newline, a key file keeps every byte),
// then the kernel command line; a named file that is missing is said.
func TestLUKSKeys(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "keys/image.key"), []byte("image\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	m := &Machine{Root: root, Console: &out,
		Cmdline: "quiet etcd-rescue.luks.passphrase=typed etcd-rescue.luks.keyfile=/keys/image.key"}
	m.readCmdline()
	env := &Env{
		Member: plan.Member{Name: "m0", LUKS: &plan.LUKS{PassphraseFile: "/etc/etcd-rescue/pass", KeyFile: "/etc/etcd-rescue/missing"}},
		Files:  map[string]ignition.File{"/etc/etcd-rescue/pass": {Data: []byte("secret\n")}},
	}
	keys := m.luksKeys(env)
	var got []string
	for _, k := range keys {
		got = append(got, k.Source+"="+string(k.Data))
	}
	want := []string{
		"members[].luks.passphraseFile /etc/etcd-rescue/pass=secret",
		"etcd-rescue.luks.passphrase= on the kernel command line=typed",
		"etcd-rescue.luks.keyfile=/keys/image.key=image\n",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("keys = %q, want %q", got, want)
	}
	if !strings.Contains(out.String(), "members[].luks.keyFile /etc/etcd-rescue/missing is not among the Ignition config's files") {
		t.Errorf("the missing key file is not said:\n%s", out.String())
	}
	// A verify role activates read-only, a restore read-write unless dry.
	if a := m.volumeActivator(env, roleSpec{}); !a.ReadOnly {
		t.Error("a read-only role activates read-write")
	}
	if a := m.volumeActivator(env, roleSpec{writableRoot: true}); a.ReadOnly {
		t.Error("a writing role activates read-only")
	}
	if a := m.volumeActivator(&Env{DryRun: true}, roleSpec{writableRoot: true}); !a.ReadOnly {
		t.Error("a dry run activates read-write")
	}
}

package volumes

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeDevice makes root/sys/class/block/<name> and Root/dev/<name> holding
// data at offset.
func fakeDevice(t *testing.T, root, name string, size int64, data []byte, offset int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "sys/class/block", name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(root, "dev", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, offset); err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeFile(t, filepath.Join(root, "sys/class/block", name, "size"), strconv.FormatInt(size/512, 10))
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mdSuper() []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, mdMagic)
	binary.LittleEndian.PutUint32(b[4:], 1)
	return b
}

func TestProbe(t *testing.T) {
	root := t.TempDir()
	label := make([]byte, 32)
	copy(label, "LABELONE")
	copy(label[24:], "LVM2 001")
	end := make([]byte, 4)
	binary.LittleEndian.PutUint32(end, mdMagic)
	for _, c := range []struct {
		name   string
		data   []byte
		offset int64
		want   kind
	}{
		{"luks", append([]byte("LUKS\xba\xbe"), 0, 2), 0, kindLUKS},
		{"md12", mdSuper(), 4096, kindMD},
		{"md11", mdSuper(), 0, kindMD},
		{"md10", end, ((1 << 20) - 8192) &^ 4095, kindMD},
		{"lvm", label, 512, kindLVM},
		{"ext4", []byte{0x53, 0xef}, 1024 + 56, kindNone},
	} {
		fakeDevice(t, root, c.name, 1<<20, c.data, c.offset)
		if got := probe(filepath.Join(root, "dev", c.name), 1<<20); got != c.want {
			t.Errorf("%s: probe = %s, want %s", c.name, got, c.want)
		}
	}
}

// TestAssembleDegraded runs the activation with a fake mdadm that starts a
// degraded array: the console must say so, and the array is looked into.
func TestAssembleDegraded(t *testing.T) {
	root := t.TempDir()
	fakeDevice(t, root, "vda", 1<<20, mdSuper(), 4096)
	var console bytes.Buffer
	var ran []string
	a := &Activator{Root: root, Console: &console, ReadOnly: true,
		Run: func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
			ran = append(ran, name+" "+strings.Join(args, " "))
			md := filepath.Join(root, "sys/class/block/md127")
			writeFile(t, filepath.Join(md, "md/level"), "raid1")
			writeFile(t, filepath.Join(md, "md/raid_disks"), "2")
			writeFile(t, filepath.Join(md, "md/degraded"), "1")
			writeFile(t, filepath.Join(md, "md/array_state"), "readonly")
			writeFile(t, filepath.Join(md, "slaves/vda"), "")
			writeFile(t, filepath.Join(root, "sys/class/block/vda/holders/md127"), "")
			return nil, nil
		}}
	if !a.Activate(context.Background()) {
		t.Fatalf("no new device reported:\n%s", console.String())
	}
	if len(ran) != 1 || ran[0] != Mdadm+" --assemble --scan --run --readonly" {
		t.Errorf("ran %q", ran)
	}
	if want := "volumes: RAID /dev/md127 degraded (1 of 2 members) but used: raid1 on vda, read-only"; !strings.Contains(console.String(), want) {
		t.Errorf("console lacks %q:\n%s", want, console.String())
	}
	if a.looked["md127"] {
		t.Error("the new array is not looked into")
	}
	if !Held(root, "vda") || Held(root, "md127") {
		t.Error("Held is wrong")
	}
}

func TestLVMConfig(t *testing.T) {
	ro := lvmConfig(true, []string{"rhel", "data"})
	for _, want := range []string{`read_only_volume_list=["rhel","data"]`, "metadata_read_only=1", "backup=0 archive=0", "udev_sync=0"} {
		if !strings.Contains(ro, want) {
			t.Errorf("read-only config lacks %s: %s", want, ro)
		}
	}
	if rw := lvmConfig(false, []string{"rhel"}); strings.Contains(rw, "read_only") || !strings.Contains(rw, "backup=0 archive=0") {
		t.Errorf("read-write config: %s", rw)
	}
}

// luksImage makes a real LUKS2 header with cryptsetup, with a token of
// the given type if any.
func luksImage(t *testing.T, root, name, token string) string {
	t.Helper()
	fakeDevice(t, root, name, 20<<20, nil, 0)
	dev := filepath.Join(root, "dev", name)
	cmd := exec.Command("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-", dev)
	cmd.Stdin = strings.NewReader("secret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup luksFormat (install cryptsetup-bin: make deps): %v\n%s", err, out)
	}
	if token != "" {
		tf := filepath.Join(t.TempDir(), "token.json")
		writeFile(t, tf, `{"type":"`+token+`","keyslots":["0"]}`)
		if out, err := exec.Command("cryptsetup", "token", "import", "--disable-external-tokens", "--json-file", tf, dev).CombinedOutput(); err != nil {
			t.Fatalf("token import: %v\n%s", err, out)
		}
	}
	return dev
}

func TestLUKSWithoutKey(t *testing.T) {
	root := t.TempDir()
	plain := luksImage(t, root, "vda", "")
	bound := luksImage(t, root, "vdb", "systemd-tpm2")
	h, err := ReadHeader(bound)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || len(h.UUID) != 36 || len(h.Tokens) != 1 || h.Tokens[0] != "systemd-tpm2" {
		t.Fatalf("header = %+v", h)
	}
	var console bytes.Buffer
	a := &Activator{Root: root, Console: &console, ReadOnly: true, KeyHelp: "give it with X",
		Run: func(context.Context, []byte, string, ...string) ([]byte, error) {
			t.Error("a tool ran without a key to try")
			return nil, nil
		}}
	if a.Activate(context.Background()) {
		t.Error("a locked volume made a device")
	}
	probs := a.Problems()
	if len(probs) != 2 {
		t.Fatalf("problems = %v", probs)
	}
	hp, _ := ReadHeader(plain)
	for i, want := range []string{
		"LUKS volume " + plain + " (UUID " + hp.UUID + ") needs a key and none was given; give it with X",
		"LUKS volume " + bound + " (UUID " + h.UUID + ") is bound to TPM2, which this image does not unlock; give it with X",
	} {
		if probs[i].Error() != want {
			t.Errorf("problem %d = %q, want %q", i, probs[i], want)
		}
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

func TestLUKSWrongKey(t *testing.T) {
	root := t.TempDir()
	dev := luksImage(t, root, "vda", "")
	wrong := exec.Command("sh", "-c", "exit 2").Run()
	var args []string
	a := &Activator{Root: root, ReadOnly: true, KeyHelp: "help",
		Keys: []Key{{Source: "plan", Data: []byte("nope")}},
		Run: func(_ context.Context, _ []byte, _ string, a ...string) ([]byte, error) {
			args = a
			return []byte("No key available with this passphrase."), wrong
		}}
	a.Activate(context.Background())
	if p := a.Problems(); len(p) != 1 || !strings.Contains(p[0].Error(), "LUKS volume "+dev) || !strings.Contains(p[0].Error(), "no key given opens it (tried plan); help") {
		t.Errorf("problems = %v", p)
	}
	if !strings.Contains(strings.Join(args, " "), "--readonly") {
		t.Errorf("a read-only activation opened without --readonly: %v", args)
	}
}

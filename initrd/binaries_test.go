package initrd

import (
	"debug/elf"
	"path/filepath"
	"strings"
	"testing"
)

// TestToolFiles resolves the carried tools on this host: every DT_NEEDED
// library of every file in the closure must be in it, with the loader.
func TestToolFiles(t *testing.T) {
	files, err := ToolFiles(Tools)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range files {
		have[filepath.Base(f)] = true
	}
	for _, f := range files {
		e, err := elf.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		needed, err := e.DynString(elf.DT_NEEDED)
		e.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, lib := range needed {
			if !have[lib] {
				t.Errorf("%s needs %s, which the image would not carry", f, lib)
			}
		}
	}
	for _, want := range []string{"ld-linux-x86-64.so.2", "libc.so.6", "libdevmapper.so.1.02.1", "libcryptsetup.so.12", "mdadm", "lvm", "cryptsetup", "dmsetup"} {
		if !have[want] {
			t.Errorf("closure lacks %s: %v", want, files)
		}
	}
	recs, err := ToolRecords(Tools)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range recs {
		names[r.Name] = true
	}
	for _, want := range []string{"usr/sbin/lvm", "usr/sbin", "lib64/ld-linux-x86-64.so.2"} {
		if !names[want] {
			t.Errorf("records lack %s", want)
		}
	}
}

func TestToolFilesMissing(t *testing.T) {
	if _, err := ToolFiles([]string{"/usr/sbin/no-such-tool"}); err == nil || !strings.Contains(err.Error(), "no-such-tool") {
		t.Errorf("a missing program gave %v", err)
	}
	if _, err := findLibrary("libno-such-library.so.9", nil, "/"); err == nil || !strings.Contains(err.Error(), "libno-such-library.so.9 not found") {
		t.Errorf("a missing library gave %v", err)
	}
}

package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/ignition"
)

// TestWriteBesideBackup has a role write a file beside the backup: the
// backup volume is mounted read-write for that write only and read-only
// again for the rest of the role. A device that refuses a read-write mount
// gives ErrBackupReadOnly with the backup still mounted; an existing file
// is not replaced; a backup on the master's root is not written.
func TestWriteBesideBackup(t *testing.T) {
	const snap = "etcd/snapshot_2024-01-01_000000.db"
	boot := func(t *testing.T, readOnlyDevice bool, files map[string]string, write func(env *Env) error) *fakeMachine {
		t.Helper()
		f := newFake(t, "")
		f.setFwCfg(buildConfig(t, testPlan, ignition.Role{Role: ignition.RoleVerify}))
		f.addDisk("vda", "backup", files)
		mount := f.Mount
		f.Mount = func(source, target, fstype string, ro bool, data string) error {
			if readOnlyDevice && !ro {
				f.calls = append(f.calls, "mount refused: read-only device")
				return syscall.EROFS
			}
			return mount(source, target, fstype, ro, data)
		}
		withRole(t, "verify", func(_ context.Context, env *Env) error {
			if err := write(env); err != nil {
				return err
			}
			// The backup is readable again after the write.
			if _, err := os.Stat(filepath.Join(env.Backup, filepath.Base(snap))); err != nil {
				return err
			}
			fmt.Fprintln(env.Console, "VERIFY-OK")
			return nil
		}, NeedsBackup())
		if err := f.Run(context.Background()); err != nil {
			t.Fatalf("Run: %v\n%s", err, f.console.String())
		}
		if len(f.mounts) != 0 {
			t.Errorf("still mounted: %+v", f.mounts)
		}
		return f
	}
	content := func(f *fakeMachine, name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(f.content[filepath.Join(f.Root, "dev/vda")], "etcd", name))
		return string(b), err
	}

	t.Run("written", func(t *testing.T) {
		var path string
		f := boot(t, false, map[string]string{snap: "x"}, func(env *Env) (err error) {
			path, err = env.WriteBesideBackup("survey-master-0.json", []byte(`{"sources":[]}`))
			return err
		})
		if path != filepath.Join(f.Root, MountBackup, "etcd", "survey-master-0.json") {
			t.Errorf("written to %s", path)
		}
		if got, err := content(f, "survey-master-0.json"); err != nil || got != `{"sources":[]}` {
			t.Errorf("file on the volume: %q, %v", got, err)
		}
		var mounts []string
		for _, c := range f.mountCalls() {
			if strings.Contains(c, MountBackup) {
				mounts = append(mounts, c)
			}
		}
		want := []string{
			"mount /dev/vda /run/etcd-rescue/backup ext4 ro=true noload",
			"mount /dev/vda /run/etcd-rescue/backup ext4 ro=false ",
			"mount /dev/vda /run/etcd-rescue/backup ext4 ro=true noload",
		}
		if strings.Join(mounts, "\n") != strings.Join(want, "\n") {
			t.Errorf("backup mounts:\n%s\nwant:\n%s", strings.Join(mounts, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("read-only-device", func(t *testing.T) {
		f := boot(t, true, map[string]string{snap: "x"}, func(env *Env) error {
			_, err := env.WriteBesideBackup("survey-master-0.json", []byte("{}"))
			if !errors.Is(err, ErrBackupReadOnly) {
				return fmt.Errorf("got %v, want ErrBackupReadOnly", err)
			}
			return nil
		})
		if _, err := content(f, "survey-master-0.json"); err == nil {
			t.Error("file written on a read-only device")
		}
	})

	t.Run("exists", func(t *testing.T) {
		f := boot(t, false, map[string]string{snap: "x", "etcd/survey-master-0.json": "old"}, func(env *Env) error {
			if _, err := env.WriteBesideBackup("survey-master-0.json", []byte("new")); err == nil {
				return errors.New("an existing file was replaced without an error")
			}
			return nil
		})
		if got, _ := content(f, "survey-master-0.json"); got != "old" {
			t.Errorf("existing file now holds %q", got)
		}
	})

	t.Run("bad-name", func(t *testing.T) {
		boot(t, false, map[string]string{snap: "x"}, func(env *Env) error {
			if _, err := env.WriteBesideBackup("../escape.json", []byte("{}")); err == nil {
				return errors.New("a name with a path was taken")
			}
			return nil
		})
	})
}

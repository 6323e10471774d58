package restore_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/lock"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
)

// editManifest replaces text in the scene's etcd manifest.
func editManifest(t *testing.T, s *disaster.Scene, pairs ...string) {
	t.Helper()
	p := filepath.Join(s.Root, s.Profile.Manifest)
	b, err := os.ReadFile(p)
	mustDo(t, err)
	out := strings.NewReplacer(pairs...).Replace(string(b))
	if out == string(b) {
		t.Fatalf("manifest edit %q changed nothing", pairs)
	}
	mustDo(t, os.WriteFile(p, []byte(out), 0o644))
}

// TestManifestDataDirIsRestored: the data dir restored is the one the
// manifest gives etcd (kubeadm's etcd.local.dataDir), also when --data-dir
// is given twice (etcd takes the last), and not the profile's default.
func TestManifestDataDirIsRestored(t *testing.T) {
	cases := []struct {
		name  string
		edit  []string
		serve bool
	}{
		{"custom data dir", []string{"/var/lib/etcd", "/var/lib/etcd-data"}, true},
		{"data dir given twice", []string{
			"- --data-dir=/var/lib/etcd\n", "- --data-dir=/var/lib/etcd\n    - --data-dir=/var/lib/etcd-data\n",
			"mountPath: /var/lib/etcd\n", "mountPath: /var/lib/etcd-data\n",
			"path: /var/lib/etcd\n", "path: /var/lib/etcd-data\n",
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := scene(t, profile.Kubeadm)
			old := disaster.TreeHash(t, filepath.Join(s.Root, "var/lib/etcd/member"))
			editManifest(t, s, c.edit...)
			mustDo(t, os.Rename(filepath.Join(s.Root, "var/lib/etcd"), filepath.Join(s.Root, "var/lib/etcd-data")))
			// The profile's default holds a decoy the restore must leave alone.
			decoy := filepath.Join(s.Root, "var/lib/etcd")
			mustDo(t, os.MkdirAll(decoy, 0o700))
			mustDo(t, os.WriteFile(filepath.Join(decoy, "decoy"), []byte("x"), 0o600))
			decoySnap := disaster.Snap(t, decoy)

			var out bytes.Buffer
			o := options(s, &out)
			o.DryRun = true
			mustDo(t, restore.Run(context.Background(), o))
			if !strings.Contains(out.String(), "data dir: /var/lib/etcd-data (the manifest's --data-dir /var/lib/etcd-data)") {
				t.Fatalf("the dry run does not print the manifest's data dir:\n%s", out.String())
			}
			out.Reset()
			o.DryRun = false
			if err := restore.Run(context.Background(), o); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if ch := decoySnap.Changes(t); len(ch) > 0 {
				t.Fatalf("the profile's default data dir was touched: %v", ch)
			}
			kept, _ := filepath.Glob(filepath.Join(s.Root, "var/lib/etcd-rescue/backup/*/var/lib/etcd-data/member"))
			if len(kept) != 1 || disaster.TreeHash(t, kept[0]) != old {
				t.Fatalf("old data not kept from /var/lib/etcd-data: %v\n%s", kept, out.String())
			}
			info, err := etcddata.Read(etcddata.DBPath(filepath.Join(s.Root, "var/lib/etcd-data")))
			if err != nil || len(info.Members) != 1 {
				t.Fatalf("restored backend at /var/lib/etcd-data: %+v %v", info, err)
			}
			if c.serve {
				s.CheckRestored(t, startFromManifest(t, s))
			}
		})
	}
}

// TestIssueCasesRefuseBeforeAnyChange: each input of the issue is refused
// by the first, read-only checks, with the root byte for byte unchanged.
func TestIssueCasesRefuseBeforeAnyChange(t *testing.T) {
	manifest := func(b string) func(*testing.T, *disaster.Scene, *restore.Options) {
		return func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
			mustDo(t, os.WriteFile(filepath.Join(s.Root, s.Profile.Manifest), []byte(b), 0o644))
		}
	}
	backupIn := func(rel func(*profile.Profile) string) func(*testing.T, *disaster.Scene, *restore.Options) {
		return func(t *testing.T, s *disaster.Scene, o *restore.Options) {
			to := filepath.Join(s.Root, rel(s.Profile), "backup")
			mustDo(t, os.Rename(s.BackupDir, to))
			o.BackupDir = to
		}
	}
	faults := []fault{
		{"manifest not YAML", manifest("{{{ not: [yaml"), "etcd manifest"},
		{"manifest not a Pod", manifest("apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n"), "etcd manifest"},
		{"manifest empty", manifest(""), "etcd manifest"},
		{"manifest a folder", func(t *testing.T, s *disaster.Scene, _ *restore.Options) {
			p := filepath.Join(s.Root, s.Profile.Manifest)
			mustDo(t, os.Remove(p))
			mustDo(t, os.Mkdir(p, 0o755))
		}, "etcd manifest"},
		{"peer URL with a path", withPeerURL("https://127.0.0.1:2380/etcd"), "path"},
		{"peer URL port 0", withPeerURL("https://127.0.0.1:0"), "port"},
		{"peer URL port 99999", withPeerURL("https://127.0.0.1:99999"), "port"},
		{"peer URL without host", withPeerURL("https://:2380"), "host"},
		{"peer URL with a query", withPeerURL("https://127.0.0.1:2380?a=b"), "query"},
		{"peer URL with user info", withPeerURL("https://u:p@127.0.0.1:2380"), "user"},
		{"backup inside the data dir", backupIn(func(p *profile.Profile) string { return p.DataDir }), "is inside"},
		{"backup inside the manifests folder", backupIn(func(p *profile.Profile) string { return p.ManifestDir }), "is inside"},
		{"backup inside the certificate folder", backupIn(func(p *profile.Profile) string { return p.CertDir }), "is inside"},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			s := scene(t, profile.Kubeadm)
			var out bytes.Buffer
			o := options(s, &out)
			f.damage(t, s, &o)
			root := disaster.Snap(t, s.Root)
			for _, dry := range []bool{true, false} {
				o.DryRun = dry
				err := restore.Run(context.Background(), o)
				checkRefused(t, err, f.want, out.String(), root)
				if strings.Contains(out.String(), "step 1/") {
					t.Fatalf("refused after a step ran (dry run %v):\n%s", dry, out.String())
				}
			}
		})
	}
}

// TestSymlinkedLevelsRestoreInsideTheRoot relocates each level of the
// profile's paths behind an absolute symlink, the certificate folder and
// the manifest included, and restores.
func TestSymlinkedLevelsRestoreInsideTheRoot(t *testing.T) {
	for _, prof := range profile.Names() {
		for _, lv := range []string{"certs", "manifest", "etc"} {
			t.Run(prof+" "+lv, func(t *testing.T) {
				s := scene(t, prof)
				h := &hostileRoot{s: s, rng: rand.New(rand.NewPCG(1, 2))}
				rel := map[string]string{"certs": s.Profile.CertDir, "manifest": s.Profile.Manifest, "etc": "etc"}[lv]
				target := relocate(t, h, rel, true)
				var out bytes.Buffer
				o := options(s, &out)
				o.Force = true
				if err := restore.Run(context.Background(), o); err != nil {
					t.Fatalf("%v\n%s", err, out.String())
				}
				if l, err := os.Readlink(filepath.Join(s.Root, rel)); err != nil || l != "/"+target {
					t.Fatalf("the symlink changed: %q %v", l, err)
				}
			})
		}
	}
}

// TestSecondRunOnTheRootIsRefused: while one run holds the root, a restore
// (dry run included) is refused at once, naming the holder's pid, with the
// root unchanged; once released, the restore runs.
func TestSecondRunOnTheRootIsRefused(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	held, err := lock.Acquire(s.Root)
	mustDo(t, err)
	root := disaster.Snap(t, s.Root)
	var out bytes.Buffer
	o := options(s, &out)
	for _, dry := range []bool{true, false} {
		o.DryRun = dry
		err := restore.Run(context.Background(), o)
		checkRefused(t, err, "pid "+strconv.Itoa(os.Getpid()), out.String(), root)
	}
	held.Release()
	out.Reset()
	o.DryRun = false
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("after the other run ended: %v\n%s", err, out.String())
	}
}

// TestCancelStopsAndResumes: a SIGINT or SIGTERM (the context cancelled)
// stops the run before its next step or phase; the same command resumes.
func TestCancelStopsAndResumes(t *testing.T) {
	s := scene(t, profile.Kubeadm)
	var out bytes.Buffer
	o := options(s, &out)
	ctx, cancel := context.WithCancel(context.Background())
	o.AfterStep = func(step string) {
		if step == "keep-old-state" {
			cancel()
		}
	}
	err := restore.Run(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("cancelled run: err = %v\n%s", err, out.String())
	}
	if _, err := os.Stat(filepath.Join(s.Root, s.Profile.DataDir, "member")); err == nil {
		t.Fatalf("the snapshot was restored after the cancel\n%s", out.String())
	}
	out.Reset()
	o.AfterStep = nil
	if err := restore.Run(context.Background(), o); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out.String())
	}
	s.CheckRestored(t, startFromManifest(t, s))
}

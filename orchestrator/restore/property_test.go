package restore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/lock"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/restore"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/rootfs"
)

// hostile is one generated master root: shape changes a copy of a staged
// scene and says what a correct restore must do with it.
type hostile struct {
	name  string
	shape func(t *testing.T, h *hostileRoot)
}

// hostileRoot is a scene being shaped, and what the shape expects.
type hostileRoot struct {
	s   *disaster.Scene
	o   *restore.Options
	rng *rand.Rand
	// refuses: the restore must be refused, saying refuse. Else it must
	// succeed with the data restored at dataRel, the data dir as the
	// master sees it (dataDir: its host path, resolved in the root).
	refuse  string
	refuses bool
	dataRel string
	dataDir string
	// oldData is the tree hash of the old member folder, "" when the
	// shape leaves no readable old data to keep.
	oldData string
	// serve: the restored member may be started from the manifest (no
	// symlink on the way to its data dir, which the start helper would
	// follow on this host).
	serve bool
	// release runs after the restore (a lock held by "another run").
	release func()
	// interrupt names a step after which a first run stops dead, as a
	// crash would; the checked run resumes it.
	interrupt string
}

func (h *hostileRoot) path(rel string) string { return filepath.Join(h.s.Root, rel) }

// levels are the profile's paths a symlink may replace, outermost first.
func levels(p *profile.Profile) []string {
	return []string{"var", "var/lib", p.DataDir, "etc", "etc/kubernetes", p.ManifestDir, p.Manifest, p.CertDir}
}

// relocate moves the entry at rel to a new place in the root and leaves a
// symlink to it: an absolute one (resolved in the root, as the master
// would) or a relative one. The layout stays valid for the master.
func relocate(t *testing.T, h *hostileRoot, rel string, absolute bool) string {
	t.Helper()
	target := fmt.Sprintf("data/moved-%d/%s", h.rng.IntN(1000), filepath.Base(rel))
	mustDo(t, os.MkdirAll(filepath.Dir(h.path(target)), 0o755))
	mustDo(t, os.Rename(h.path(rel), h.path(target)))
	link := "/" + target
	if !absolute {
		var err error
		link, err = filepath.Rel(filepath.Dir(h.path(rel)), h.path(target))
		mustDo(t, err)
	}
	mustDo(t, os.Symlink(link, h.path(rel)))
	return target
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// hostiles are the generators; each draws its details from the case's rng.
func hostiles() []hostile {
	refuse := func(name, want string, f func(t *testing.T, h *hostileRoot)) hostile {
		return hostile{name, func(t *testing.T, h *hostileRoot) { f(t, h); h.refuse, h.refuses = want, true }}
	}
	writeManifest := func(b []byte) func(t *testing.T, h *hostileRoot) {
		return func(t *testing.T, h *hostileRoot) { mustDo(t, os.WriteFile(h.path(h.s.Profile.Manifest), b, 0o644)) }
	}
	return []hostile{
		{"plain", func(*testing.T, *hostileRoot) {}},
		{"absolute symlink at a level", func(t *testing.T, h *hostileRoot) {
			lv := levels(h.s.Profile)
			relocate(t, h, lv[h.rng.IntN(len(lv))], true)
		}},
		{"relative symlink at a level", func(t *testing.T, h *hostileRoot) {
			lv := levels(h.s.Profile)
			relocate(t, h, lv[h.rng.IntN(len(lv))], false)
		}},
		{"data dir symlinked to its own disk", func(t *testing.T, h *hostileRoot) {
			target := relocate(t, h, h.s.Profile.DataDir, true)
			h.serve = false
			h.dataRel = target
		}},
		{"data dir symlink climbing out with ..", func(t *testing.T, h *hostileRoot) {
			// "../../../../../<outside>" stays at the root's top, as on the
			// master: the decoy beside the root is never touched.
			outside := filepath.Join(filepath.Dir(h.s.Root), "outside-etcd")
			mustDo(t, os.Rename(h.path(h.s.Profile.DataDir), outside))
			mustDo(t, os.Symlink(strings.Repeat("../", 8)+"outside-etcd", h.path(h.s.Profile.DataDir)))
			h.dataRel, h.oldData, h.serve = "outside-etcd", "", false
		}},
		{"data dir absolute symlink to the host's /", func(t *testing.T, h *hostileRoot) {
			mustDo(t, os.RemoveAll(h.path(h.s.Profile.DataDir)))
			host := filepath.Join(filepath.Dir(h.s.Root), "host-data")
			mustDo(t, os.MkdirAll(host, 0o700))
			mustDo(t, os.Symlink(host, h.path(h.s.Profile.DataDir)))
			h.dataRel, h.oldData, h.serve = host, "", false
		}},
		{"custom data dir in the manifest", func(t *testing.T, h *hostileRoot) {
			p := h.path(h.s.Profile.Manifest)
			b, err := os.ReadFile(p)
			mustDo(t, err)
			mustDo(t, os.WriteFile(p, bytes.ReplaceAll(b, []byte("/var/lib/etcd"), []byte("/var/lib/etcd-data")), 0o644))
			mustDo(t, os.Rename(h.path("var/lib/etcd"), h.path("var/lib/etcd-data")))
			// The profile's default holds a decoy the restore must not take.
			mustDo(t, os.MkdirAll(h.path("var/lib/etcd"), 0o700))
			mustDo(t, os.WriteFile(h.path("var/lib/etcd/decoy"), []byte("x"), 0o600))
			h.dataRel = "var/lib/etcd-data"
		}},
		{"interrupted run", func(t *testing.T, h *hostileRoot) {
			at := []string{"verify-backup", "preflight", "keep-old-state", "restore-snapshot", "rewrite-manifest"}
			if h.s.Profile.Name == profile.OpenShift43 {
				at = append(at, "restore-static-resources")
			}
			h.interrupt = at[h.rng.IntN(len(at))]
			if h.interrupt == "restore-static-resources" {
				// A step that finds its work done is skipped and cannot
				// be interrupted: the survivor lost a resource folder,
				// so the step puts it back (as the SIGKILL test does).
				mustDo(t, os.RemoveAll(h.path("etc/kubernetes/static-pod-resources/kube-apiserver-pod-7/configmaps")))
			}
		}},
		{"damaged old data dir", func(t *testing.T, h *hostileRoot) {
			db := etcddata.DBPath(h.path(h.s.Profile.DataDir))
			junk := bytes.Repeat([]byte{byte(h.rng.IntN(256))}, 4096*(1+h.rng.IntN(4)))
			mustDo(t, os.WriteFile(db, junk, 0o600))
			h.oldData = disaster.TreeHash(t, filepath.Join(h.path(h.s.Profile.DataDir), "member"))
		}},
		refuse("symlink loop at a level", "", func(t *testing.T, h *hostileRoot) {
			lv := levels(h.s.Profile)
			rel := lv[h.rng.IntN(len(lv))]
			mustDo(t, os.Rename(h.path(rel), h.path(rel)+".real"))
			mustDo(t, os.Symlink(filepath.Base(rel)+".loop", h.path(rel)))
			mustDo(t, os.Symlink("/"+rel, h.path(rel)+".loop"))
		}),
		refuse("manifest not YAML", "etcd manifest", writeManifest([]byte("{{{ not: [yaml"))),
		refuse("manifest not a Pod", "etcd manifest", writeManifest([]byte("apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n"))),
		refuse("manifest empty", "etcd manifest", writeManifest(nil)),
		refuse("manifest a folder", "", func(t *testing.T, h *hostileRoot) {
			p := h.path(h.s.Profile.Manifest)
			mustDo(t, os.Remove(p))
			mustDo(t, os.Mkdir(p, 0o755))
		}),
		refuse("manifest symlink to nothing", "", func(t *testing.T, h *hostileRoot) {
			p := h.path(h.s.Profile.Manifest)
			mustDo(t, os.Remove(p))
			mustDo(t, os.Symlink("/etc/kubernetes/gone.yaml", p))
		}),
		refuse("bad peer URL", "", func(t *testing.T, h *hostileRoot) {
			bad := []string{"https://127.0.0.1:0", "https://127.0.0.1:99999", "https://:2380", "https://127.0.0.1:2380/path",
				"https://127.0.0.1:2380?q=1", "https://user:pw@127.0.0.1:2380", "http://127.0.0.1", "https://127.0.0.1:2380#f"}
			h.o.Member.PeerURL = bad[h.rng.IntN(len(bad))]
		}),
		refuse("backup inside the data dir", "is inside", func(t *testing.T, h *hostileRoot) {
			inside := filepath.Join(h.path(h.s.Profile.DataDir), "backup")
			mustDo(t, os.Rename(h.s.BackupDir, inside))
			h.o.BackupDir = inside
		}),
		refuse("journal run ID climbing out", "move it aside", func(t *testing.T, h *hostileRoot) {
			ids := []string{"../../../../escape", "..", "a/b", ""}
			writeJournal(t, h, map[string]any{"operation": "restore", "runID": ids[h.rng.IntN(len(ids))]})
		}),
		refuse("journal kept path outside the root", "", func(t *testing.T, h *hostileRoot) {
			writeJournal(t, h, map[string]any{"operation": "restore", "runID": "20260101-000000",
				"params": map[string]string{"name": h.o.Member.Name}, // other params: refused as another run too
				"kept":   []map[string]any{{"from": "/etc/../../x", "to": "/tmp/x", "how": "moved"}}})
		}),
		refuse("journal not JSON", "damaged", func(t *testing.T, h *hostileRoot) {
			p := journal.Path(h.s.Root, "restore")
			mustDo(t, os.MkdirAll(filepath.Dir(p), 0o700))
			mustDo(t, os.WriteFile(p, []byte("{\"runID\": "), 0o600))
		}),
		refuse("another run holds the root", "holds", func(t *testing.T, h *hostileRoot) {
			l, err := lock.Acquire(h.s.Root)
			mustDo(t, err)
			h.release = func() { l.Release() }
		}),
	}
}

func writeJournal(t *testing.T, h *hostileRoot, j map[string]any) {
	t.Helper()
	b, err := json.Marshal(j)
	mustDo(t, err)
	p := journal.Path(h.s.Root, "restore")
	mustDo(t, os.MkdirAll(filepath.Dir(p), 0o700))
	mustDo(t, os.WriteFile(p, b, 0o600))
}

// TestHostileRootsRefuseUnchangedOrRestoreInside generates master roots
// from a seed (ETCD_RESCUE_SEED to replay one) and checks each: a clear
// refusal with the root and its parent folder byte for byte unchanged, or
// a restore inside the root with the old data kept, and for a sample of
// them a real etcd serving every key from the restored data dir.
func TestHostileRootsRefuseUnchangedOrRestoreInside(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("ETCD_RESCUE_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (ETCD_RESCUE_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 14))
	gens := hostiles()
	// Every generator once (staging the scenes takes most of the first
	// cases' time), then random ones for a bounded while.
	var budget time.Time
	served := 0
	for i := 0; i < len(gens) || time.Now().Before(budget); i++ {
		if i == len(gens) {
			budget = time.Now().Add(15 * time.Second)
		}
		g := gens[i%len(gens)] // every generator once, then at random
		if i >= len(gens) {
			g = gens[rng.IntN(len(gens))]
		}
		prof := profile.Names()[rng.IntN(len(profile.Names()))]
		caseSeed := rng.Uint64()
		t.Run(fmt.Sprintf("%02d %s %s", i, prof, g.name), func(t *testing.T) {
			s := scene(t, prof)
			var out bytes.Buffer
			o := options(s, &out)
			// Old peers' ports may be reused by anything on this host; that
			// check has its own test (TestRefusesWhileOldMemberAnswers).
			o.Force = true
			h := &hostileRoot{s: s, o: &o, rng: rand.New(rand.NewPCG(caseSeed, 1)),
				dataRel: s.Profile.DataDir, serve: true}
			h.oldData = disaster.TreeHash(t, filepath.Join(s.Root, s.Profile.DataDir, "member"))
			g.shape(t, h)
			if h.interrupt != "" {
				runUntil(t, o, h.interrupt)
				out.Reset()
			}
			if strings.Contains(g.name, "symlink at a level") {
				h.serve = false // the start helper follows symlinks on this host
			}
			parent := filepath.Dir(s.Root)
			root, outside := disaster.Snap(t, s.Root), disaster.Snap(t, parent)
			err := restore.Run(context.Background(), o)
			if h.release != nil {
				h.release()
			}
			if h.refuses {
				checkRefused(t, err, h.refuse, out.String(), root)
				if ch := outside.Changes(t); len(ch) > 0 {
					t.Fatalf("a refused restore changed the root's parent folder: %v", ch)
				}
				return
			}
			if err != nil {
				t.Fatalf("restore: %v\n%s", err, out.String())
			}
			for _, c := range outside.Changes(t) {
				if rel := strings.Fields(c)[1]; rel != "root" && !strings.HasPrefix(rel, "root/") {
					t.Fatalf("the restore wrote outside the root: %s\n%s", c, out.String())
				}
			}
			checkRestoredInside(t, h, out.String())
			if h.serve && served < 2 && rng.IntN(4) == 0 {
				served++
				s.CheckRestored(t, startFromManifest(t, s))
			}
		})
	}
}

func checkRefused(t *testing.T, err error, want, out string, root disaster.Tree) {
	t.Helper()
	if err == nil {
		t.Fatalf("restore succeeded, want a refusal\n%s", out)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to say %q\n%s", err, want, out)
	}
	if !strings.Contains(out, "RESTORE-FAILED: ") {
		t.Errorf("no RESTORE-FAILED marker:\n%s", out)
	}
	if ch := root.Changes(t); len(ch) > 0 {
		t.Fatalf("a refused restore (%v) changed the root: %v\n%s", err, ch, out)
	}
}

// checkRestoredInside reads the restored backend where the test expects the
// master's data dir and the journal's record of where the old data went.
func checkRestoredInside(t *testing.T, h *hostileRoot, out string) {
	t.Helper()
	root, err := rootfs.Open(h.s.Root)
	mustDo(t, err)
	if h.dataDir, err = root.Resolve(h.dataRel); err != nil {
		t.Fatal(err)
	}
	info, err := etcddata.Read(etcddata.DBPath(h.dataDir))
	if err != nil {
		t.Fatalf("no restored backend at %s: %v\n%s", h.dataDir, err, out)
	}
	if len(info.Members) != 1 || info.Members[0].Name != h.o.Member.Name {
		t.Errorf("the backend at %s has members %+v, want only the restored %s\n%s", h.dataDir, info.Members, h.o.Member.Name, out)
	}
	if !strings.Contains(out, "RESTORE-OK") {
		t.Errorf("no RESTORE-OK marker:\n%s", out)
	}
	if h.oldData == "" {
		return
	}
	j, err := journal.Open(h.s.Root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(h.dataDir)
	rec, ok := j.KeptAt(real)
	if !ok || rec.How != journal.MovedContents {
		t.Fatalf("no moved-contents record for %s in %+v\n%s", real, j.Kept, out)
	}
	if got := disaster.TreeHash(t, filepath.Join(rec.To, "member")); got != h.oldData {
		t.Errorf("old data kept at %s differs from the old member folder", rec.To)
	}
	if !strings.HasPrefix(rec.To, h.s.Root+"/") {
		t.Errorf("old data kept outside the root: %s", rec.To)
	}
}

package rootfs

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// world is a temporary folder holding a master root and, beside it, a folder
// "outside" with a sentinel file that nothing may ever reach.
type world struct {
	root    *Root
	outside string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	top := t.TempDir()
	rootDir := filepath.Join(top, "root")
	outside := filepath.Join(top, "outside")
	for _, d := range []string{rootDir, outside, filepath.Join(outside, "data/etcd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	return &world{root: r, outside: outside}
}

func (w *world) mkdir(t *testing.T, rel string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(w.root.Path, rel), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (w *world) link(t *testing.T, rel, target string) {
	t.Helper()
	p := filepath.Join(w.root.Path, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func (w *world) write(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(w.root.Path, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpen(t *testing.T) {
	if _, err := Open(""); err == nil {
		t.Error("empty root accepted")
	}
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing root accepted")
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Open(file); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("file as root: err = %v", err)
	}
	// A host symlink to the root is resolved once, at Open.
	os.Mkdir(filepath.Join(dir, "real"), 0o755)
	os.Symlink("real", filepath.Join(dir, "alias"))
	r, err := Open(filepath.Join(dir, "alias"))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.EvalSymlinks(filepath.Join(dir, "real")); r.Path != want {
		t.Errorf("Path = %s, want %s", r.Path, want)
	}
}

func TestResolve(t *testing.T) {
	w := newWorld(t)
	w.mkdir(t, "data/etcd")
	w.mkdir(t, "etc/kubernetes")
	w.mkdir(t, "srv/k8s")
	w.link(t, "var/lib/etcd", "/data/etcd")               // a dedicated etcd disk
	w.link(t, "etc/kubernetes-abs", "/srv/k8s")           // absolute, to another folder
	w.link(t, "rel/up", "../../../../..")                 // relative, far above the root
	w.link(t, "rel/slash", "/")                           // at the root itself
	w.link(t, "rel/dotdot", "..")                         // at the parent
	w.link(t, "chain/a", "b")                             // a -> b -> /c -> ../d/e
	w.link(t, "chain/b", "/chain/c")                      //
	w.link(t, "chain/c", "../chain/d/e")                  //
	w.link(t, "loop/a", "b")                              // a <-> b
	w.link(t, "loop/b", "a")                              //
	w.link(t, "self", "self")                             // itself
	w.link(t, "escape", w.outside)                        // the host's real path of "outside"
	w.link(t, "escape-rel", "../outside/sentinel")        // relative, out and back
	w.link(t, "dangling", "/does/not/exist")              // to nothing
	w.link(t, "deep/x", "/var/lib/etcd/../etcd/./member") // through another link, with ..

	root := w.root.Path
	in := func(p string) string { return filepath.Join(root, p) }
	for _, c := range []struct{ rel, want string }{
		{"", root},
		{"/", root},
		{".", root},
		{"..", root},
		{"../../..", root},
		{"/../etc", in("etc")},
		{"var/lib/etcd", in("data/etcd")},
		{"/var/lib/etcd/member/snap/db", in("data/etcd/member/snap/db")},
		{"var/lib/etcd/..", in("data")}, // ".." after a link goes to the target's parent, as on the master
		{"etc/kubernetes-abs/manifests", in("srv/k8s/manifests")},
		{"rel/up", root},
		{"rel/up/etc", in("etc")},
		{"rel/slash/etc", in("etc")},
		{"rel/dotdot", root},
		{"rel/dotdot/rel/dotdot/etc", in("etc")},
		{"chain/a", in("chain/d/e")},
		{"chain/a/f", in("chain/d/e/f")},
		{"escape/sentinel", in(strings.TrimPrefix(w.outside, "/") + "/sentinel")},
		{"escape-rel", in("outside/sentinel")},
		{"dangling/x", in("does/not/exist/x")},
		{"deep/x", in("data/etcd/member")},
		{"missing/../etc", in("etc")},
	} {
		got, err := w.root.Resolve(c.rel)
		if err != nil {
			t.Errorf("Resolve(%q): %v", c.rel, err)
			continue
		}
		if got != c.want {
			t.Errorf("Resolve(%q) = %s, want %s", c.rel, got, c.want)
		}
	}
	for _, rel := range []string{"loop/a", "loop/a/x", "self", "self/x"} {
		_, err := w.root.Resolve(rel)
		if !errors.Is(err, syscall.ELOOP) {
			t.Errorf("Resolve(%q): err = %v, want ELOOP", rel, err)
		}
	}
	if _, err := w.root.Resolve("a\x00b"); err == nil {
		t.Error("NUL accepted")
	}
}

func TestResolveParentKeepsTheLink(t *testing.T) {
	w := newWorld(t)
	w.mkdir(t, "data/etcd")
	w.link(t, "var", "/srv/var")
	w.mkdir(t, "srv/var/lib")
	w.link(t, "srv/var/lib/etcd", "/data/etcd")
	root := w.root.Path
	for _, c := range []struct{ rel, want string }{
		{"/var/lib/etcd", filepath.Join(root, "srv/var/lib/etcd")},
		{"/var/lib/etcd/", filepath.Join(root, "data/etcd")},
		{"var/lib/etcd", filepath.Join(root, "srv/var/lib/etcd")},
		{"/var", filepath.Join(root, "var")},
		{"/var/lib/etcd/..", filepath.Join(root, "data")},
		{"/", root},
		{"..", root},
	} {
		got, err := w.root.ResolveParent(c.rel)
		if err != nil || got != c.want {
			t.Errorf("ResolveParent(%q) = %s, %v; want %s", c.rel, got, err, c.want)
		}
	}
	fi, err := w.root.Lstat("/var/lib/etcd")
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("Lstat(/var/lib/etcd) = %v, %v; want the symlink", fi, err)
	}
	fi, err = w.root.Stat("/var/lib/etcd")
	if err != nil || !fi.IsDir() {
		t.Errorf("Stat(/var/lib/etcd) = %v, %v; want the folder", fi, err)
	}
}

func TestRel(t *testing.T) {
	w := newWorld(t)
	root := w.root.Path
	for _, c := range []struct{ host, want string }{
		{root, "/"},
		{filepath.Join(root, "var/lib/etcd"), "/var/lib/etcd"},
	} {
		if got, err := w.root.Rel(c.host); err != nil || got != c.want {
			t.Errorf("Rel(%s) = %q, %v; want %q", c.host, got, err, c.want)
		}
	}
	for _, host := range []string{w.outside, root + "x", filepath.Dir(root), filepath.Join(root, "../outside")} {
		if got, err := w.root.Rel(host); err == nil {
			t.Errorf("Rel(%s) = %q, want an error", host, got)
		}
	}
}

func TestFileOperationsStayInside(t *testing.T) {
	w := newWorld(t)
	w.link(t, "etc/kubernetes", "/")
	w.link(t, "up", "../../../../../..")
	w.link(t, "abs-out", w.outside)
	w.write(t, w.outside[1:]+"/sentinel", "inside") // what the master sees at that path
	w.write(t, "outside/sentinel", "inside too")

	for _, rel := range []string{"abs-out/sentinel", "up" + w.outside + "/sentinel"} {
		b, err := w.root.ReadFile(rel, 0)
		if err != nil {
			t.Fatalf("ReadFile(%s): %v", rel, err)
		}
		if string(b) != "inside" {
			t.Errorf("ReadFile(%s) = %q: read outside the root", rel, b)
		}
	}
	if b, err := w.root.ReadFile("../outside/sentinel", 0); err != nil || string(b) != "inside too" {
		t.Errorf("ReadFile(../outside/sentinel) = %q, %v", b, err)
	}
	if _, err := w.root.ReadFile("abs-out/sentinel", 3); err == nil || !strings.Contains(err.Error(), "larger than 3 bytes") {
		t.Errorf("ReadFile over the limit: err = %v", err)
	}
	if _, err := w.root.ReadFile("etc", 0); err == nil || !strings.Contains(err.Error(), "folder") {
		t.Errorf("ReadFile(folder): err = %v", err)
	}

	// Writes and folders through links land inside the root.
	if err := w.root.WriteFile("abs-out/new", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := w.root.MkdirAll("up/var/lib/etcd/member", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := w.root.WriteFile("etc/kubernetes/etc/x.conf", []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{w.outside[1:] + "/new", "var/lib/etcd/member", "etc/x.conf"} {
		if _, err := os.Stat(filepath.Join(w.root.Path, rel)); err != nil {
			t.Errorf("%s not created inside the root: %v", rel, err)
		}
	}
	entries, _ := os.ReadDir(w.outside)
	if len(entries) != 2 {
		t.Errorf("outside was written to: %v", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(w.outside, "sentinel")); string(b) != "outside" {
		t.Errorf("outside sentinel changed: %q", b)
	}
}

// TestSymlinkAtEveryLevel replaces each component of a profile path in turn
// with a symlink of each kind and checks that the path resolves where the
// master would find it.
func TestSymlinkAtEveryLevel(t *testing.T) {
	parts := strings.Split("var/lib/etcd/member/snap/db", "/")
	for level := 1; level <= len(parts); level++ {
		prefix := strings.Join(parts[:level], "/")
		rest := strings.Join(parts[level:], "/")
		for _, kind := range []string{"absolute", "relative", "relative-above", "absolute-dotdot", "chain"} {
			t.Run(fmt.Sprintf("%s/%s", prefix, kind), func(t *testing.T) {
				w := newWorld(t)
				// The real place is "moved/<prefix>"; the link at prefix points there.
				w.mkdir(t, filepath.Join("moved", prefix))
				depth := strings.Count(prefix, "/")
				up := strings.Repeat("../", depth)
				var target string
				switch kind {
				case "absolute":
					target = "/moved/" + prefix
				case "relative":
					target = up + "moved/" + prefix
				case "relative-above":
					target = up + "../../../../moved/" + prefix
				case "absolute-dotdot":
					target = "/../moved/./x/../" + prefix
				case "chain":
					w.link(t, "hop1", "/hop2")
					w.link(t, "hop2", "moved")
					target = "/hop1/" + prefix
				}
				w.link(t, prefix, target)
				got, err := w.root.Resolve("/" + strings.Join(parts, "/"))
				if err != nil {
					t.Fatal(err)
				}
				want := filepath.Join(w.root.Path, "moved", prefix, rest)
				if got != want {
					t.Errorf("Resolve = %s, want %s (link %s -> %s)", got, want, prefix, target)
				}
			})
		}
	}
}

// TestResolveMatchesTheKernel builds random trees of folders and symlinks
// (absolute, relative, upward, looping) and checks every path against the
// kernel's own in-root resolution, openat2(RESOLVE_IN_ROOT): the way the
// master, chrooted at the root, would see it.
func TestResolveMatchesTheKernel(t *testing.T) {
	probe, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		t.Fatalf("openat2(RESOLVE_IN_ROOT) is needed as the reference: %v", err)
	}
	unix.Close(probe)
	names := []string{"a", "b", "c", "..", ".", "l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9"}
	compared := 0
	for seed := int64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewSource(seed))
		w := newWorld(t)
		var dirs []string
		dirs = append(dirs, "")
		for i := 0; i < 12; i++ {
			d := filepath.Join(dirs[rng.Intn(len(dirs))], names[rng.Intn(3)])
			if os.MkdirAll(filepath.Join(w.root.Path, d), 0o755) == nil {
				dirs = append(dirs, d)
			}
		}
		randPath := func(abs bool) string {
			n := 1 + rng.Intn(5)
			var p []string
			for i := 0; i < n; i++ {
				p = append(p, names[rng.Intn(len(names))])
			}
			s := strings.Join(p, "/")
			if abs {
				s = "/" + s
			}
			return s
		}
		for i := 0; i < 10; i++ {
			at := filepath.Join(dirs[rng.Intn(len(dirs))], fmt.Sprintf("l%d", i))
			target := randPath(rng.Intn(2) == 0)
			if rng.Intn(5) == 0 {
				target = w.outside
			}
			os.Symlink(target, filepath.Join(w.root.Path, at))
		}
		rootFd, err := unix.Open(w.root.Path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 500; i++ {
			rel := randPath(rng.Intn(2) == 0)
			got, err := w.root.Resolve(rel)
			if err == nil && !w.root.contains(got) {
				t.Fatalf("seed %d: Resolve(%q) = %s is outside the root", seed, rel, got)
			}
			fd, kerr := unix.Openat2(rootFd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
			if kerr != nil {
				// Missing entries and loops: the kernel has no answer to compare.
				continue
			}
			kernel, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			unix.Close(fd)
			compared++
			if err != nil {
				t.Errorf("seed %d: Resolve(%q): %v; the kernel resolves it to %s", seed, rel, err, kernel)
			} else if got != kernel {
				t.Errorf("seed %d: Resolve(%q) = %s, the kernel says %s", seed, rel, got, kernel)
			}
		}
		unix.Close(rootFd)
	}
	if compared < 1000 {
		t.Errorf("only %d paths resolved by the kernel to compare with", compared)
	}
	t.Logf("%d paths compared with the kernel", compared)
}

func TestCheckPath(t *testing.T) {
	for _, p := range []string{"/var/lib/etcd", "var/lib/etcd", "var/lib/etcd-rescue/old/20260101-000000", "/a..b"} {
		if err := CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "/", ".", "../x", "a/../../x", "a/..", "/var//lib", "var/lib/", "./var", "a\x00b"} {
		if err := CheckPath(p); err == nil {
			t.Errorf("CheckPath(%q) accepted", p)
		}
	}
	for _, s := range []string{"20260101-000000", "run.1"} {
		if err := CheckName(s); err != nil {
			t.Errorf("CheckName(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", ".", "..", "../x", "a/b", "x\x00"} {
		if err := CheckName(s); err == nil {
			t.Errorf("CheckName(%q) accepted", s)
		}
	}
}

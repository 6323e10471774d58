package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/etcd-rescue/etcd-rescue"

// listedPackage is what `go list -deps -json` says of one package.
type listedPackage struct {
	ImportPath string
	Name       string
	Standard   bool
	EmbedFiles []string
}

// deps lists every package the given package of this module links.
func deps(t *testing.T, pkg string) []listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Name,Standard,EmbedFiles", pkg).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list -deps %s listed only %d packages", pkg, len(pkgs))
	}
	return pkgs
}

// words are package names that end in "test" and are no test helpers.
var words = map[string]bool{"latest": true, "contest": true, "protest": true, "attest": true}

// testOnly says why a package has no place in the rescue image's binary:
// it is under test/ or internal/testing/, it is a test helper (named
// *test, like httptest or etcdtest), or it is a package of this module that
// embeds files (the product embeds none; the master fixtures do). The Go
// standard library is left out: every program links its internal/synctest.
func testOnly(p listedPackage) string {
	if p.Standard {
		return ""
	}
	switch {
	case strings.HasPrefix(p.ImportPath, module+"/test/"):
		return "under test/"
	case strings.HasPrefix(p.ImportPath, module+"/internal/testing/"):
		return "under internal/testing/"
	case strings.HasSuffix(p.Name, "test") && !words[p.Name]:
		return fmt.Sprintf("a test helper (package %s)", p.Name)
	case strings.HasPrefix(p.ImportPath, module+"/") && len(p.EmbedFiles) > 0:
		return fmt.Sprintf("embeds %s", strings.Join(p.EmbedFiles, ", "))
	}
	return ""
}

func testOnlyDeps(t *testing.T, pkg string) []string {
	var bad []string
	for _, p := range deps(t, pkg) {
		if why := testOnly(p); why != "" {
			bad = append(bad, p.ImportPath+": "+why)
		}
	}
	return bad
}

// TestNoTestCodeInProduct: etcd-rescue, the binary the rescue image
// carries, links no lab, test helper or fixture.
func TestNoTestCodeInProduct(t *testing.T) {
	if bad := testOnlyDeps(t, "."); len(bad) > 0 {
		t.Errorf("etcd-rescue links test code; move it behind etcd-rescue-lab or a _test.go file:\n  %s", strings.Join(bad, "\n  "))
	}
}

// TestTestOnlyFindsTheLab: the same check finds the lab and the embedded
// master fixtures in etcd-rescue-lab, which links them on purpose (as
// etcd-rescue did before the lab had a binary of its own).
func TestTestOnlyFindsTheLab(t *testing.T) {
	bad := strings.Join(testOnlyDeps(t, "../etcd-rescue-lab"), "\n")
	for _, want := range []string{
		module + "/test/qemu/lab/drill: under test/",
		module + "/test/qemu/lab/kubelet: under test/",
		module + "/internal/testing/fixture: under internal/testing/",
	} {
		if !strings.Contains(bad, want) {
			t.Errorf("the check does not report %q; it reported:\n%s", want, bad)
		}
	}
	for _, p := range []listedPackage{
		{ImportPath: module + "/internal/testing/fixture", Name: "fixture", EmbedFiles: []string{"roots/a.yaml"}},
		{ImportPath: "k8s.io/client-go/kubernetes/fake/kubetest", Name: "kubetest"},
		{ImportPath: module + "/orchestrator/x", Name: "x", EmbedFiles: []string{"testdata/m.yaml"}},
	} {
		if testOnly(p) == "" {
			t.Errorf("%s (package %s) passes the check", p.ImportPath, p.Name)
		}
	}
	for _, p := range []listedPackage{
		{ImportPath: "internal/synctest", Name: "synctest", Standard: true},
		{ImportPath: "k8s.io/client-go/tools/clientcmd/api/latest", Name: "latest"},
	} {
		if why := testOnly(p); why != "" {
			t.Errorf("%s is refused: %s", p.ImportPath, why)
		}
	}
}

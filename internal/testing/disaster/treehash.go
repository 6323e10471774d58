package disaster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// TreeHash hashes a folder's names, types, modes, symlink targets and file
// contents (not times): equal hashes mean nothing in it changed.
func TreeHash(t testing.TB, dir string) string {
	t.Helper()
	lines, err := treeLines(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, l := range lines {
		io.WriteString(h, l+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TreeDiff lists what differs between two folders, for failure messages.
func TreeDiff(t testing.TB, a, b string) []string {
	t.Helper()
	la, err := treeLines(a)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := treeLines(b)
	if err != nil {
		t.Fatal(err)
	}
	return diffLines(la, lb)
}

// Tree is a folder as it was at one moment, so that a test can later say
// whether and how it changed.
type Tree struct {
	dir   string
	lines []string
}

// Snap records a folder's names, types, modes, symlink targets and file
// contents.
func Snap(t testing.TB, dir string) Tree {
	t.Helper()
	lines, err := treeLines(dir)
	if err != nil {
		t.Fatal(err)
	}
	return Tree{dir: dir, lines: lines}
}

// Changes lists what differs in the folder now from when it was snapped
// ("- " was there before, "+ " is there now); none means nothing changed.
func (tr Tree) Changes(t testing.TB) []string {
	t.Helper()
	now, err := treeLines(tr.dir)
	if err != nil {
		t.Fatal(err)
	}
	return diffLines(tr.lines, now)
}

func diffLines(la, lb []string) []string {
	in := map[string]int{}
	for _, l := range la {
		in[l]--
	}
	for _, l := range lb {
		in[l]++
	}
	var out []string
	for l, n := range in {
		if n < 0 {
			out = append(out, "- "+l)
		} else if n > 0 {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return out
}

func treeLines(dir string) ([]string, error) {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %s", rel, info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += " -> " + l
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			line += " " + hex.EncodeToString(h.Sum(nil))[:16]
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return lines, err
}

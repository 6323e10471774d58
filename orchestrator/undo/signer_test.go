package undo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/boot"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/journal"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/roles"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
)

// signerFiles are the files the rescue image's restore role installs, as
// the master sees them.
var signerFiles = []string{signer.DefaultBinary, plan.DefaultPath, signer.StateDir + "/tokens.json", signer.UnitPath, signer.UnitWantsPath}

// roleEnv is the rescue image's environment for the restore role on a
// scene, with a token store in the config.
func roleEnv(t *testing.T, s *disaster.Scene, out *bytes.Buffer) *boot.Env {
	t.Helper()
	m := s.Member()
	p := &plan.Plan{Version: plan.Version, Cluster: plan.Cluster{Name: "t", Domain: "test.example.com", Token: "etcd-cluster-1"},
		Profile: s.Profile.Name, Survivor: m.Name,
		Members: []plan.Member{m, {Name: "new-1", PeerURL: "https://127.0.0.1:1"}}}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]ignition.File{
		ignition.PlanPath:      {Path: ignition.PlanPath, Data: raw},
		roles.SignerTokensFile: {Path: roles.SignerTokensFile, Data: []byte(`{"tokens":{}}`)},
	}
	return &boot.Env{Plan: p, Role: ignition.Role{Role: ignition.RoleRestore, Member: m.Name}, Member: m,
		Root: s.Root, Backup: s.BackupDir, Console: out, Files: files}
}

// fileState hashes each signer file (a link's target for the enabling
// link); "" for one that is not there.
func fileState(t *testing.T, s *disaster.Scene) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range signerFiles {
		m[p] = readEntry(t, filepath.Join(s.Root, p))
	}
	return m
}

func readEntry(t *testing.T, p string) string {
	t.Helper()
	fi, err := os.Lstat(p)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		l, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		return "link:" + l
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return digest(b)
}

// digest names a file's content (the binary is too big to print).
func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%x", sum[:8])
}

// TestUndoTakesAwayTheSignerTheRestoreInstalled: the master held an older
// etcd-rescue binary and plan; the restore role replaced them (keeping
// them aside) and created the token store and the signer's unit. The undo
// puts the old binary and plan back, keeps every file the restore wrote in
// its own folder, and undoing the undo brings the restored state back,
// signer included.
func TestUndoTakesAwayTheSignerTheRestoreInstalled(t *testing.T) {
	s := disaster.Stage(t, disaster.Options{Profile: profile.OpenShift43, Keys: 100, Lost: 10})
	old := map[string]string{
		signer.DefaultBinary: "#!/bin/sh\n# an older etcd-rescue\n",
		plan.DefaultPath:     "# an older plan\n",
	}
	for p, body := range old {
		host := profile.Abs(s.Root, p)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(host, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before, beforeFiles := state(t, s), fileState(t, s)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := roles.Restore(ctx, roleEnv(t, s, &out)); err != nil {
		t.Fatalf("restore role: %v\n%s", err, out.String())
	}
	after, afterFiles := state(t, s), fileState(t, s)
	for _, p := range signerFiles {
		if afterFiles[p] == "" || afterFiles[p] == beforeFiles[p] {
			t.Fatalf("the restore did not install %s: the test would prove nothing\n%s", p, out.String())
		}
	}

	// The restore kept the replaced files aside byte for byte and
	// recorded the ones it created.
	rj, err := journal.Open(s.Root, "restore", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range signerFiles {
		host := filepath.Join(profile.Abs(s.Root, filepath.Dir(p)), filepath.Base(p))
		k, kept := rj.KeptAt(host)
		switch {
		case old[p] != "" && (!kept || readEntry(t, k.To) != digest([]byte(old[p]))):
			t.Errorf("the restore did not keep the old %s aside byte for byte: %+v", p, k)
		case old[p] == "" && !rj.IsCreated(host):
			t.Errorf("the restore did not record %s as created: %v", host, rj.Created)
		}
	}

	// The signer removes its unit once membership is full: an undo after
	// that has no unit to keep aside, and still puts everything back.
	t.Run("after the signer removed itself", func(t *testing.T) {
		gone := s.Copy(t)
		if removed, err := signer.Uninstall(gone.Root); err != nil || len(removed) != 2 {
			t.Fatalf("uninstall: %v %v", removed, err)
		}
		text := runUndo(t, gone, "", false)
		if !strings.Contains(text, filepath.Join(gone.Root, signer.UnitPath)+" does not exist: nothing to keep") {
			t.Errorf("the undo does not say the unit is gone:\n%s", text)
		}
		sameState(t, gone, before, "what it was before the restore")
		if got := fileState(t, gone); !equalMaps(got, beforeFiles) {
			t.Errorf("after the undo the signer's files are\n%q\nwant\n%q", got, beforeFiles)
		}
	})

	// The dry run lists the moves of the created files.
	text := runUndo(t, s, "", true)
	for _, p := range []string{signer.UnitPath, signer.UnitWantsPath} {
		if !strings.Contains(text, "keep aside: "+filepath.Join(s.Root, p)+" -> ") || !strings.Contains(text, "(created by run "+rj.RunID) {
			t.Errorf("the dry run does not list keeping %s aside:\n%s", p, text)
		}
	}

	text = runUndo(t, s, "", false)
	t.Log(text)
	sameState(t, s, before, "what it was before the restore")
	if got := fileState(t, s); !equalMaps(got, beforeFiles) {
		t.Errorf("after the undo the signer's files are\n%q\nwant, as before the restore,\n%q", got, beforeFiles)
	}
	first := undoJournal(t, s)
	for _, p := range signerFiles {
		host := filepath.Join(profile.Abs(s.Root, filepath.Dir(p)), filepath.Base(p))
		k, ok := first.KeptAt(host)
		if !ok || !strings.HasPrefix(k.To, first.BackupDir(s.Root)+"/") || readEntry(t, k.To) != afterFiles[p] {
			t.Errorf("the restored %s is not in the undo's backup folder byte for byte: %+v", p, k)
		}
	}

	// Undoing the undo brings back the restored state, signer included.
	text = runUndo(t, s, first.RunID, false)
	t.Log(text)
	sameState(t, s, after, "what the restore left")
	if got := fileState(t, s); !equalMaps(got, afterFiles) {
		t.Errorf("after the undo of the undo the signer's files are\n%q\nwant, as the restore left them,\n%q", got, afterFiles)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

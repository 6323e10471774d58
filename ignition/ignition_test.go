package ignition

import (
	"encoding/json"
	"strings"
	"testing"
)

const testPlan = `version: 1
cluster: {name: lab, domain: lab.example}
survivor: m0
members:
- {name: m0, peerURL: "https://10.0.0.10:2380", disk: {label: root-m0}}
- {name: m1, peerURL: "https://10.0.0.11:2380"}
- {name: m2, peerURL: "https://10.0.0.12:2380"}
`

func TestBuildReadRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		files []string
		unit  bool
	}{
		{"verify", Options{Plan: []byte(testPlan), Role: Role{Role: RoleVerify}}, []string{PlanPath, RolePath}, false},
		{"restore", Options{Plan: []byte(testPlan), Role: Role{Role: RoleRestore, After: AfterReboot}}, []string{PlanPath, RolePath}, false},
		{"join", Options{Plan: []byte(testPlan), Role: Role{Role: RoleJoin, Member: "m1"}, Token: []byte("s3cret\n")}, []string{PlanPath, RolePath, TokenPath}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := Build(tc.opts)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			var generic map[string]any
			if err := json.Unmarshal(raw, &generic); err != nil {
				t.Fatalf("output is not JSON: %v", err)
			}
			if hasUnit := strings.Contains(string(raw), JoinUnit); hasUnit != tc.unit {
				t.Errorf("config has %s: %v, want %v", JoinUnit, hasUnit, tc.unit)
			}
			cfg, err := Read(raw)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			for _, p := range tc.files {
				if _, ok := cfg.Files[p]; !ok {
					t.Errorf("file %s missing from %v", p, cfg.paths())
				}
			}
			if got := string(cfg.Files[PlanPath].Data); got != testPlan {
				t.Errorf("plan changed on the way:\n%s", got)
			}
			if cfg.Role.Role != tc.opts.Role.Role {
				t.Errorf("role = %q, want %q", cfg.Role.Role, tc.opts.Role.Role)
			}
			if tc.name == "restore" && cfg.Role.Member != "m0" {
				t.Errorf("restore member = %q, want the survivor m0", cfg.Role.Member)
			}
			if tc.name == "join" {
				if string(cfg.Token()) != "s3cret" {
					t.Errorf("token = %q", cfg.Token())
				}
				if cfg.Files[TokenPath].Mode != 0o600 {
					t.Errorf("token mode = %o, want 600", cfg.Files[TokenPath].Mode)
				}
			}
		})
	}
}

func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"bad plan", Options{Plan: []byte("version: 2\n"), Role: Role{Role: RoleVerify}}, "version is 2"},
		{"bad role", Options{Plan: []byte(testPlan), Role: Role{Role: "dance"}}, `role "dance" is unknown`},
		{"join without member", Options{Plan: []byte(testPlan), Role: Role{Role: RoleJoin}, Token: []byte("t")}, "needs the member name"},
		{"join without token", Options{Plan: []byte(testPlan), Role: Role{Role: RoleJoin, Member: "m1"}}, "needs the new master's token"},
		{"join survivor", Options{Plan: []byte(testPlan), Role: Role{Role: RoleJoin, Member: "m0"}, Token: []byte("t")}, "is the survivor"},
		{"unknown member", Options{Plan: []byte(testPlan), Role: Role{Role: RoleVerify, Member: "m9"}}, `member "m9" is not in the plan`},
		{"restore non-survivor", Options{Plan: []byte(testPlan), Role: Role{Role: RoleRestore, Member: "m1"}}, "not the survivor"},
		{"bad hash", Options{Plan: []byte(testPlan), Role: Role{Role: RoleVerify}, BinarySource: "https://example.invalid/etcd-rescue", BinaryHash: "md5-nope"}, "ignition rejects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestReadRejects(t *testing.T) {
	good, err := Build(Options{Plan: []byte(testPlan), Role: Role{Role: RoleVerify}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"empty", "", "empty"},
		{"not json", "hello", "does not parse"},
		{"spec 2", `{"ignition":{"version":"2.2.0"}}`, "does not parse"},
		{"no plan", `{"ignition":{"version":"3.4.0"}}`, "has no " + PlanPath},
		{"bad plan", strings.Replace(string(good), planDataURL(t, good), "data:,version%3A%202", 1), "version is 2"},
		{"remote source", `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"` + PlanPath + `","contents":{"source":"https://example.invalid/plan"}}]}}`, "not a data: URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read([]byte(tc.raw))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// planDataURL returns the plan's source URL inside a built config.
func planDataURL(t *testing.T, raw []byte) string {
	t.Helper()
	var c struct {
		Storage struct {
			Files []struct {
				Path     string
				Contents struct{ Source string }
			}
		}
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for _, f := range c.Storage.Files {
		if f.Path == PlanPath {
			return f.Contents.Source
		}
	}
	t.Fatal("no plan in config")
	return ""
}

// TestJoinConfigForAFirstBoot checks what a CoreOS first boot needs from a
// join config: a unit that does not wait for an etcd only the kubelet
// starts later, and a way to trust the signer without the CA in the root.
func TestJoinConfigForAFirstBoot(t *testing.T) {
	raw, err := Build(Options{Plan: []byte(testPlan), Role: Role{Role: RoleJoin, Member: "m2"}, Token: []byte("tok\n"),
		CACert: []byte("-----BEGIN CERTIFICATE-----\n"), CAPin: "sha256:ab12"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), " join --no-wait ") {
		t.Errorf("the first-boot join unit would wait for etcd before the kubelet starts it:\n%s", raw)
	}
	cfg, err := Read(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Files[CACertPath].Data) != "-----BEGIN CERTIFICATE-----\n" || string(cfg.Files[CAPinPath].Data) != "sha256:ab12\n" {
		t.Errorf("CA files: %q %q", cfg.Files[CACertPath].Data, cfg.Files[CAPinPath].Data)
	}
}

func TestBuildLUKSFiles(t *testing.T) {
	plan := strings.Replace(testPlan, "disk: {label: root-m0}", "disk: {label: root-m0}, luks: {passphraseFile: /etc/etcd-rescue/luks.passphrase}", 1)
	if plan == testPlan {
		t.Fatalf("test plan has no m0 line to change:\n%s", testPlan)
	}
	role := Role{Role: RoleVerify, Member: "m0"}
	if _, err := Build(Options{Plan: []byte(plan), Role: role}); err == nil || !strings.Contains(err.Error(), "--file /etc/etcd-rescue/luks.passphrase=LOCAL-FILE") {
		t.Errorf("a config without the plan's LUKS file: %v", err)
	}
	raw, err := Build(Options{Plan: []byte(plan), Role: role, Files: map[string][]byte{"/etc/etcd-rescue/luks.passphrase": []byte("pw\n")}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Read(raw)
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.Files["/etc/etcd-rescue/luks.passphrase"]; string(f.Data) != "pw\n" || f.Mode != 0o600 {
		t.Errorf("passphrase file = %+v", f)
	}
	for _, bad := range []string{"/root/key", "/etc/etcd-rescue/../shadow", PlanPath} {
		if _, err := Build(Options{Plan: []byte(testPlan), Role: role, Files: map[string][]byte{bad: nil}}); err == nil {
			t.Errorf("file %s accepted", bad)
		}
	}
}

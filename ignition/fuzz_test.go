package ignition

import (
	"testing"
)

// FuzzRead: any config is read or refused, never a panic, and what is read
// keeps within the limits and carries a valid plan and role.
func FuzzRead(f *testing.F) {
	if good, err := Build(Options{Plan: []byte(testPlan), Role: Role{Role: RoleVerify}}); err == nil {
		f.Add(good)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := Read(raw)
		if err != nil {
			return
		}
		if cfg.Plan == nil {
			t.Fatal("a read config has no plan")
		}
		if err := cfg.Role.Validate(cfg.Plan); err != nil {
			t.Fatalf("a read config has an invalid role: %v", err)
		}
		var total int
		for p, file := range cfg.Files {
			if len(file.Data) > MaxFileSize {
				t.Fatalf("file %s holds %d bytes", p, len(file.Data))
			}
			total += len(file.Data)
		}
		if total > MaxFilesSize {
			t.Fatalf("files hold %d bytes together", total)
		}
	})
}

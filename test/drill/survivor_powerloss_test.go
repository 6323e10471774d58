package drill_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/ignition"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/disaster"
	"github.com/etcd-rescue/etcd-rescue/internal/testing/etcdtest"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/plan"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// TestDrillPowerLossSurvivorData powers the survivor off hard (QEMU
// killed) while the rescue image restores it from its own data dir
// (source: survivor-data), inside keep-old-state and inside
// restore-survivor-data, then boots the rescue image again on the same
// disk. The survivor went down with its last acknowledged writes in its
// WAL only (etcdtest.PowerLoss). The second boot must resume and end
// RESTORE-OK; read back from the disk, the old data dir is kept byte for
// byte, and a real etcd started from the rewritten manifest serves every
// acknowledged key as a new one-member cluster, at a revision above the
// survivor's.
func TestDrillPowerLossSurvivorData(t *testing.T) {
	const keys = 200
	s := disaster.Stage(t, disaster.Options{Profile: profile.Kubeadm, Keys: 100, Lost: 10})
	dataDir := filepath.Join(s.Root, s.Profile.DataDir)
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	rev := etcdtest.PowerLoss(t, lab.etcd, dataDir, 0, keys)
	sur, err := survey.Run(survey.Options{DataDirs: []string{dataDir}})
	if err != nil {
		t.Fatal(err)
	}
	old := sur.Sources[0]
	if old.Backend == nil || old.Backend.Revision >= rev {
		t.Fatalf("the survivor's backend %+v: the writes (to revision %d) were meant to be only in its WAL", old.Backend, rev)
	}
	oldData := disaster.TreeHash(t, dataDir)
	sv := newSurvivor(t, s, nil, ignition.AfterPoweroff)
	sv.config = restoreConfig(t, s, plan.SourceSurvivorData, ignition.AfterPoweroff)

	cuts := []powerCut{
		stepStarted("keep-old-state", 100*time.Millisecond),
		// After the replay of the copy: the restored db is being written
		// and moved into the data dir.
		{"restore-survivor-data", regexp.MustCompile(`applied to raft index \d+: revision \d+`), 0},
	}
	for _, cut := range cuts {
		t.Run(cut.step, func(t *testing.T) {
			got := sv.powerLoss(t, "survivor-powerloss-"+cut.step, cut, oldData)
			cli := s.StartFromManifest(t, got)
			etcdtest.CheckKeys(t, cli, 0, keys)
			st, err := cli.Status(context.Background(), s.Master.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			if st.Header.Revision <= rev {
				t.Errorf("revision %d not above %d, the last one the survivor's clients saw", st.Header.Revision, rev)
			}
			if st.Header.ClusterId == uint64(old.ClusterID) {
				t.Errorf("cluster ID %x is the survivor's old one", st.Header.ClusterId)
			}
			ml, err := cli.MemberList(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(ml.Members) != 1 || ml.Members[0].Name != s.Master.MemberName {
				t.Errorf("members = %v, want only %s", ml.Members, s.Master.MemberName)
			}
			t.Logf("after the power loss in %s: resumed, %d acknowledged keys served at revision %d (survivor's last %d), cluster ID %x (was %s), old data dir kept",
				cut.step, keys, st.Header.Revision, rev, st.Header.ClusterId, old.ClusterID)
		})
	}
}

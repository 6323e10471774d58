package drill

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/profile"
)

// TestPhaseTable: every phase has its own ID, one of the exported ones, and
// the recovery phases are the ones from the loss to the second join.
func TestPhaseTable(t *testing.T) {
	r := newRun(&lab{o: Options{Profile: profile.OpenShift43}}, &Report{})
	var ids, recovery []string
	for _, p := range r.phases() {
		if p.ID == "" || p.Title == "" || p.Run == nil {
			t.Errorf("phase %+v lacks an ID, a title or a Run", p)
		}
		if slices.Contains(ids, p.ID) {
			t.Errorf("phase ID %q twice", p.ID)
		}
		ids = append(ids, p.ID)
		if p.Recovery {
			recovery = append(recovery, p.ID)
		}
	}
	want := []string{PhaseBoot, PhaseWriteKeys, PhaseBackup, PhaseWriteLost, PhaseLoseQuorum, PhaseSurvey, PhaseRestore, PhaseSurvivorOS,
		PhaseJoin1, PhaseJoin2, PhaseVerify, PhaseOldMasterBack, PhaseSurvivorDisk}
	if !slices.Equal(ids, want) {
		t.Errorf("phase IDs %v, want %v", ids, want)
	}
	if want := []string{PhaseLoseQuorum, PhaseSurvey, PhaseRestore, PhaseSurvivorOS, PhaseJoin1, PhaseJoin2}; !slices.Equal(recovery, want) {
		t.Errorf("recovery phases %v, want %v", recovery, want)
	}
}

// TestRunPhases: the report carries each passed phase's ID and title, the
// failed phase's ID, and Recovery only once every recovery phase passed.
func TestRunPhases(t *testing.T) {
	var ran []string
	step := func(id string, recovery bool, err error) phase {
		return phase{ID: id, Title: "title of " + id, Recovery: recovery, Run: func(context.Context) error {
			ran = append(ran, id)
			return err
		}}
	}
	newTestRun := func() *run { return &run{lab: &lab{o: Options{Log: t.Logf}}, rep: &Report{}} }

	r := newTestRun()
	if err := r.runPhases(context.Background(), []phase{step("a", false, nil), step("b", true, nil), step("c", true, nil), step("d", false, nil)}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.rep.Phases {
		got = append(got, p.ID+"="+p.Name)
	}
	if want := []string{"a=title of a", "b=title of b", "c=title of c", "d=title of d"}; !slices.Equal(got, want) {
		t.Errorf("report phases %v, want %v", got, want)
	}
	if r.rep.Recovery <= 0 || r.rep.FailedPhase != "" {
		t.Errorf("passed run: Recovery %v, FailedPhase %q", r.rep.Recovery, r.rep.FailedPhase)
	}

	ran = nil
	r = newTestRun()
	err := r.runPhases(context.Background(), []phase{step("a", false, nil), step("b", true, nil), step("c", true, errors.New("JOIN-OK not seen")), step("d", false, nil)})
	if err == nil || !strings.Contains(err.Error(), `phase "c" (title of c): JOIN-OK not seen`) {
		t.Errorf("error %v does not name the phase by ID and title", err)
	}
	if !slices.Equal(ran, []string{"a", "b", "c"}) {
		t.Errorf("ran %v after a failure, want a, b, c", ran)
	}
	if r.rep.FailedPhase != "c" || len(r.rep.Phases) != 2 || r.rep.Recovery != 0 {
		t.Errorf("failed run: FailedPhase %q, %d phases, Recovery %v", r.rep.FailedPhase, len(r.rep.Phases), r.rep.Recovery)
	}
	if b := string(r.rep.JSON()); !strings.Contains(b, `"id": "b"`) || !strings.Contains(b, `"failedPhase": "c"`) {
		t.Errorf("the JSON report lacks the IDs:\n%s", b)
	}
}

package restore_test

import (
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/etcddata"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/survey"
)

// damageOffSurveyPath damages one leaf page of the data dir's backend that
// the survey does not read (it reads only what lies on its way to the
// newest revision, the meta and the members): the survey still finds the
// data dir usable, and only a check of every page sees the damage.
func damageOffSurveyPath(t testing.TB, dir string) {
	t.Helper()
	path := etcddata.DBPath(dir)
	var leaves []int
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			if p.Type == "leaf" {
				leaves = append(leaves, id)
			}
		}
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range leaves {
		damaged := append([]byte(nil), whole...)
		off := id * pageSize
		damaged[off+8], damaged[off+9] = 0xff, 0xff // the page's flags: no page type
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := survey.Run(survey.Options{DataDirs: []string{dir}})
		if err == nil && rep.Sources[0].Usable() {
			return
		}
	}
	t.Fatalf("%s: every one of its %d leaf pages is on the survey's path: write more keys in the scene", path, len(leaves))
}

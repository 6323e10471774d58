package boltcheck
import ("testing";"context";"os";"path/filepath";"math/rand";"time")
func TestDbgTmp(t *testing.T){
	r := rand.New(rand.NewSource(1))
	for it := 0; it < 60; it++ {
		for name := range seeds {
			b := readSeed(t, filepath.Join("testdata/fuzz/FuzzCheck", name))
			for k := 0; k < 1+r.Intn(4); k++ { b[r.Intn(len(b))] ^= byte(1+r.Intn(255)) }
			p := filepath.Join(t.TempDir(), "x.db"); os.WriteFile(p, b, 0o600)
			t0 := time.Now()
			_, err := Check(context.Background(), p, Options{})
			d1 := time.Since(t0); t0 = time.Now()
			ok, det := txCheck(t, p)
			d2 := time.Since(t0)
			if d1 > time.Second || d2 > 2*time.Second { t.Logf("SLOW %s mine %v ref %v: %v | %v %s", name, d1, d2, err, ok, det) }
			k, _ := KindOf(err)
			if (err == nil && !ok) || (err != nil && ok && k == Structure) { t.Errorf("DISAGREE %s: mine %v | ref %v %s", name, err, ok, det); os.WriteFile("/tmp/disagree-"+name, b, 0o600) }
		}
	}
}

package boxtable

import (
	"bytes"
	"testing"
)

func TestWrite(t *testing.T) {
	var b bytes.Buffer
	Write(&b, [][]string{{"ID", "NAME"}, {"8e9e05c52164694d", "m0"}, {"1", "a-longer-name"}})
	want := `+------------------+---------------+
| ID               | NAME          |
+------------------+---------------+
| 8e9e05c52164694d | m0            |
| 1                | a-longer-name |
+------------------+---------------+
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	Write(&b, nil)
	if b.Len() != 0 {
		t.Errorf("no rows printed %q", b.String())
	}
}

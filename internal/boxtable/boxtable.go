// Package boxtable prints rows in etcdctl's boxed table style
// (`etcdctl -w table`), the look operators know from etcd's own tools.
package boxtable

import (
	"fmt"
	"io"
	"strings"
)

// Write prints rows; the first row is the header, ruled off from the rest.
func Write(w io.Writer, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			if i < len(widths) {
				widths[i] = max(widths[i], len(c))
			}
		}
	}
	sep := "+"
	for _, wd := range widths {
		sep += strings.Repeat("-", wd+2) + "+"
	}
	fmt.Fprintln(w, sep)
	for i, row := range rows {
		line := "|"
		for j, wd := range widths {
			c := ""
			if j < len(row) {
				c = row[j]
			}
			line += " " + c + strings.Repeat(" ", wd-len(c)) + " |"
		}
		fmt.Fprintln(w, line)
		if i == 0 {
			fmt.Fprintln(w, sep)
		}
	}
	fmt.Fprintln(w, sep)
}

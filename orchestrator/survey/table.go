package survey

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/etcd-rescue/etcd-rescue/internal/boxtable"
)

// WriteTable prints the ranking like 'etcdctl -w table', then each
// source's errors and notes, then the recommendation.
func (r *Report) WriteTable(w io.Writer) {
	rows := [][]string{{"RANK", "KIND", "SOURCE", "CLUSTER ID", "MEMBER", "VERSION", "RAFT INDEX", "TERM", "REVISION", "IN WAL", "LOST ENTRIES", "LOST REVISIONS", "STATUS"}}
	for _, s := range r.Sources {
		rows = append(rows, []string{
			strconv.Itoa(s.Rank), string(s.Kind), s.Path, hexOrDash(s.ClusterID), memberName(s), dash(s.Version),
			numOrDash(s.Index), numOrDash(s.Term), revision(s), inWAL(s), lostEntries(s), lostRevisions(s), status(s),
		})
	}
	boxtable.Write(w, rows)
	for _, s := range r.Sources {
		if s.Error != "" {
			fmt.Fprintf(w, "[%d] error: %s\n", s.Rank, s.Error)
		}
		if s.OtherCluster != "" {
			fmt.Fprintf(w, "[%d] %s\n", s.Rank, s.OtherCluster)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "[%d] note: %s\n", s.Rank, n)
		}
	}
	if r.Recommended == nil {
		fmt.Fprintln(w, "No usable source: every one is damaged or missing.")
		return
	}
	fmt.Fprintf(w, "Recommended: %s (restore source: %s)\n", r.RecommendedPath, r.PlanSource)
}

// WriteJSON prints the report for machines.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

func revision(s *Source) string {
	if s.RevisionAtLeast == 0 && !s.Usable() {
		return "-"
	}
	if s.RevisionAtLeast != s.RevisionAtMost {
		return fmt.Sprintf(">= %d", s.RevisionAtLeast)
	}
	return strconv.FormatInt(s.RevisionAtLeast, 10)
}

func inWAL(s *Source) string {
	if s.Kind != DataDir || s.WAL == nil {
		return "-"
	}
	out := fmt.Sprintf("+%d", s.InWAL.Certain)
	if maybe := s.InWAL.Possible + s.Uncommitted.Certain + s.Uncommitted.Possible; maybe > 0 {
		out += fmt.Sprintf(" (+%d maybe)", maybe)
	}
	return out
}

func lostEntries(s *Source) string {
	if s.Recommended || !s.Usable() || s.OtherCluster != "" || s.Index == 0 {
		return "-"
	}
	return strconv.FormatUint(s.LostEntries, 10)
}

func lostRevisions(s *Source) string {
	switch {
	case s.Recommended || !s.Usable() || s.OtherCluster != "":
		return "-"
	case s.LostExact:
		return strconv.FormatInt(s.LostRevisions, 10)
	}
	return fmt.Sprintf(">= %d", s.LostRevisions)
}

func status(s *Source) string {
	switch {
	case !s.Usable():
		return "DAMAGED"
	case s.OtherCluster != "":
		return "other cluster"
	case s.Recommended:
		return "recommended"
	}
	return "ok"
}

// memberName is the data dir's own member: its name when recorded, else its ID.
func memberName(s *Source) string {
	for _, m := range s.Members {
		if m.ID == s.MemberID && m.Name != "" {
			return m.Name
		}
	}
	return hexOrDash(s.MemberID)
}

func hexOrDash(v ID) string {
	if v == 0 {
		return "-"
	}
	return v.String()
}

func numOrDash(v uint64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatUint(v, 10)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package survey

import (
	"fmt"
	"sort"
)

// rank orders the sources by freshness: usable sources of the main
// cluster first (the one the survivors agree on), then usable sources of
// other clusters, then damaged ones. It recommends the first and says
// what each other choice loses against it.
func rank(sources []*Source) *Report {
	cluster, ids := mainCluster(sources)
	group := func(s *Source) int {
		switch {
		case !s.Usable():
			return 2
		case !inCluster(s, cluster, ids):
			return 1
		}
		return 0
	}
	for _, s := range sources {
		if group(s) == 1 {
			s.OtherCluster = otherClusterNote(s, cluster)
		}
	}
	sort.SliceStable(sources, func(i, j int) bool {
		a, b := sources[i], sources[j]
		if ga, gb := group(a), group(b); ga != gb {
			return ga < gb
		}
		return fresher(a, b)
	})

	r := &Report{Sources: sources}
	for i, s := range sources {
		s.Rank = i + 1
	}
	if len(sources) == 0 || group(sources[0]) != 0 {
		return r
	}
	top := sources[0]
	top.Recommended, top.LostExact = true, true
	r.Recommended, r.RecommendedPath, r.PlanSource = top, top.Path, top.Kind.PlanSource()
	for _, s := range sources[1:] {
		if group(s) != 0 {
			continue
		}
		if top.Index > s.Index && s.Index > 0 {
			s.LostEntries = top.Index - s.Index
		}
		// Lower bound: the least the recommended source reaches against
		// the most this one reaches.
		s.LostRevisions = max(0, top.RevisionAtLeast-s.RevisionAtMost)
		s.LostExact = top.RevisionAtLeast == top.RevisionAtMost && s.RevisionAtLeast == s.RevisionAtMost
	}
	return r
}

// fresher says whether a keeps more history than b: by raft index when
// both know theirs (every member of a cluster applies the same log), else
// by revision; a survivor's data dir before a backup when they tie.
func fresher(a, b *Source) bool {
	if a.Index > 0 && b.Index > 0 && a.Index != b.Index {
		return a.Index > b.Index
	}
	if a.RevisionAtLeast != b.RevisionAtLeast {
		return a.RevisionAtLeast > b.RevisionAtLeast
	}
	return a.Kind == DataDir && b.Kind != DataDir
}

// mainCluster is the cluster ID most usable data dirs hold (the freshest
// one's when they tie), and the member IDs that cluster's data dirs know.
func mainCluster(sources []*Source) (ID, map[ID]bool) {
	var dirs []*Source
	for _, s := range sources {
		if s.Kind == DataDir && s.Usable() && s.ClusterID != 0 {
			dirs = append(dirs, s)
		}
	}
	sort.SliceStable(dirs, func(i, j int) bool { return fresher(dirs[i], dirs[j]) })
	count := map[ID]int{}
	var best ID
	for _, s := range dirs {
		count[s.ClusterID]++
		if count[s.ClusterID] > count[best] {
			best = s.ClusterID
		}
	}
	ids := map[ID]bool{}
	for _, s := range dirs {
		if s.ClusterID == best {
			ids[s.MemberID] = true
			for _, m := range s.Members {
				ids[m.ID] = true
			}
		}
	}
	return best, ids
}

// inCluster says whether s belongs to the main cluster. A backup records no
// cluster ID: it belongs when it shares a member with the main cluster, and
// is taken to belong when it records no members (etcd 3.3 and older).
func inCluster(s *Source, cluster ID, ids map[ID]bool) bool {
	if cluster == 0 {
		return true
	}
	if s.Kind == DataDir {
		return s.ClusterID == cluster
	}
	if len(s.Members) == 0 {
		return true
	}
	for _, m := range s.Members {
		if ids[m.ID] {
			return true
		}
	}
	return false
}

func otherClusterNote(s *Source, cluster ID) string {
	if s.Kind == DataDir {
		return fmt.Sprintf("cluster %s, not %s: another cluster's data, its indexes do not compare", s.ClusterID, cluster)
	}
	return fmt.Sprintf("none of its members belongs to cluster %s: another cluster's backup", cluster)
}

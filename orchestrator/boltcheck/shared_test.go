package boltcheck

import "os"

// sharedDirs are folders shared by several tests (a real etcd's files, the
// benchmark's file), removed when the tests end.
var sharedDirs []string

func removeSharedFiles() {
	for _, d := range sharedDirs {
		os.RemoveAll(d)
	}
}

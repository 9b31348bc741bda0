//go:build !unix

package queue

import (
	"os"
	"sync/atomic"
)

// lockDir is a no-op where flock is not available: only one process may
// open a queue directory at a time.
func lockDir(f *os.File) error { return nil }

var fakeInode atomic.Uint64

// inodeOf has no inode to read here; a process-wide counter stands in as
// the uniquifier.
func inodeOf(fi os.FileInfo) uint64 { return fakeInode.Add(1) }

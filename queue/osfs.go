package queue

import (
	"os"
	"sync/atomic"
)

// fileSystem holds the OS calls whose failure matters to durability, so
// tests can make them fail (fault_test.go) and count them (benchmarks).
type fileSystem interface {
	Sync(f *os.File) error
	// Datasync is fdatasync where there is one.
	Datasync(f *os.File) error
	Rename(from, to string) error
	Remove(name string) error
}

type osFS struct{}

func (osFS) Sync(f *os.File) error        { return f.Sync() }
func (osFS) Datasync(f *os.File) error    { return datasync(f) }
func (osFS) Rename(from, to string) error { return os.Rename(from, to) }
func (osFS) Remove(name string) error     { return os.Remove(name) }

// Stats counts what the queue asked of the disk since Open.
type Stats struct {
	Commits   int64 // committed messages
	FileSyncs int64 // fsync of a queue file
	DirSyncs  int64 // fsync of a queue directory
	Batches   int64 // group-commit batches
	// JournalSyncs are fdatasyncs of the commit journal (one per batch
	// with journaled messages or tombstones, one per checkpoint).
	JournalSyncs int64
	Checkpoints  int64
}

// Fsyncs is the total of file, directory and journal fsyncs.
func (s Stats) Fsyncs() int64 { return s.FileSyncs + s.DirSyncs + s.JournalSyncs }

type counters struct {
	commits, fileSyncs, dirSyncs, batches, journalSyncs, checkpoints atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Commits:   c.commits.Load(),
		FileSyncs: c.fileSyncs.Load(),
		DirSyncs:  c.dirSyncs.Load(),
		Batches:   c.batches.Load(),

		JournalSyncs: c.journalSyncs.Load(),
		Checkpoints:  c.checkpoints.Load(),
	}
}

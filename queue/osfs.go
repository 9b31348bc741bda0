package queue

import (
	"os"
	"runtime"
	"strconv"
	"sync"
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
func (osFS) Rename(from, to string) error { return rename(from, to) }
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

// Spare queue files: the inodes of removed messages, kept for Create to
// reuse instead of making new ones.
//
// Creating a file costs an inode allocation, and on ext4 without a
// journal (as on the machine the benchmarks ran on) the allocator skips
// every free inode of the group that was freed in the last 5 to 35
// seconds, reading each one's deletion time: a queue that removes
// hundreds of messages a second keeps its group full of such inodes, and
// each create walked past all of them (0.5-1 ms of kernel CPU per
// message, most of the accept path's CPU; docs/performance.md). So the
// scheduler's removal keeps a second name for the file,
// incoming/.spare-<pid>-<n>, made before the removal and kept only if
// the removal succeeds, and Create reopens a spare and overwrites it. A
// spare starts with '.', so the removal's crash safety is unchanged: a
// spare is never a message, and Open deletes any it finds. Close deletes
// the pool.
//
// A spare is taken only when no reader of the message is open in this
// process (Read's Message, a delivery's or a notice's content): the
// queue counts them. A process reading queue files directly by path
// while the scheduler removes them could see the next message's bytes
// in a file it had open; the queue's lock makes this one process the
// queue's only user.
type spares struct {
	mu      sync.Mutex
	names   []string       // paths, ready for reuse
	readers map[string]int // open readers per queue ID
	seq     uint64
}

const (
	spareName = tempPrefix + "spare-"
	maxSpares = 256
	// canRecycle: hard links and inode-based IDs (lock_unix.go).
	canRecycle = runtime.GOOS != "windows" && runtime.GOOS != "plan9" && runtime.GOOS != "js" &&
		runtime.GOOS != "wasip1"
)

func (p *spares) openReader(id string) {
	p.mu.Lock()
	if p.readers == nil {
		p.readers = map[string]int{}
	}
	p.readers[id]++
	p.mu.Unlock()
}

func (p *spares) closeReader(id string) {
	p.mu.Lock()
	if p.readers[id]--; p.readers[id] <= 0 {
		delete(p.readers, id)
	}
	p.mu.Unlock()
}

// reserve returns a path for a new spare of id, or "" when the pool is
// full or id has a reader open.
func (p *spares) reserve(q *Queue, id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !canRecycle || q.strict || len(p.names) >= maxSpares || p.readers[id] > 0 {
		return ""
	}
	p.seq++
	return q.path(Incoming, spareName+strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(p.seq, 36))
}

func (p *spares) put(path string) {
	p.mu.Lock()
	if len(p.names) < maxSpares {
		p.names = append(p.names, path)
		path = ""
	}
	p.mu.Unlock()
	if path != "" {
		os.Remove(path)
	}
}

func (p *spares) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.names) == 0 {
		return ""
	}
	path := p.names[len(p.names)-1]
	p.names = p.names[:len(p.names)-1]
	return path
}

func (p *spares) drain() {
	p.mu.Lock()
	names := p.names
	p.names = nil
	p.mu.Unlock()
	for _, n := range names {
		os.Remove(n)
	}
}

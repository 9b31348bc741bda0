package queue

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// State is a queue directory (spec §7.1).
type State string

// The queue states. Maildrop, the bounce/defer/trace logs and the flush
// logs are not directories here: local submission goes through package
// pickup, and the delivery logs are status records inside the queue file.
const (
	Incoming State = "incoming"
	Active   State = "active"
	Deferred State = "deferred"
	Hold     State = "hold"
	Corrupt  State = "corrupt"
)

// States lists the queue states in the order a queue ID is looked up.
var States = []State{Incoming, Active, Deferred, Hold, Corrupt}

func validState(s State) bool {
	for _, t := range States {
		if s == t {
			return true
		}
	}
	return false
}

// markerName is the file that says a directory is a postkit queue, which
// format version it holds, and which carries the lock.
const (
	markerName    = "VERSION"
	markerContent = "postkit-queue 1\n"
	// tempPrefix starts the name of a queue file still being written.
	// Such a file was never committed; recovery removes it.
	tempPrefix = "."
)

// Options configure a Queue. The zero value is ready to use.
type Options struct {
	// NoGroupCommit makes every Commit do its own file and directory
	// fsyncs instead of sharing a journal fdatasync with concurrent
	// Commits (see the package doc). It exists to measure what group
	// commit buys; durability is the same.
	NoGroupCommit bool
	// MaxBatch caps how many requests share one batch; 0 means 256.
	MaxBatch int
	// VerifyAll makes Open check the content checksum of every message in
	// every state, not only incoming and active (the states a crash can
	// leave half-done). Read always checks the message it reads.
	VerifyAll bool
	// Clock gives the time; nil means the system clock.
	Clock Clock
	// Logger receives recovery reports; nil means slog.Default().
	Logger *slog.Logger
}

// Recovery is what Open found and repaired.
type Recovery struct {
	// Removed are the names of queue files that were never committed
	// (a crash or kill during writing) and were deleted.
	Removed []string
	// Requeued are the IDs that were in active and went back to incoming
	// to be scheduled again.
	Requeued []string
	// Replayed are the IDs whose queue files were missing or damaged
	// after a crash and were rewritten from the commit journal.
	Replayed []string
	// Corrupt are the IDs whose files failed their checksum or could not
	// be parsed; they were moved to corrupt/ and are never delivered.
	Corrupt []string
}

// Queue is a queue directory opened by one process.
type Queue struct {
	dir    string
	opts   Options
	clock  Clock
	log    *slog.Logger
	fs     fileSystem
	marker *os.File
	dirs   map[State]*os.File // open for fsync

	ids      idClock
	tempSeq  atomic.Uint64
	locks    [64]sync.Mutex // per-ID, striped
	commitCh chan *syncJob
	wg       sync.WaitGroup
	closeMu  sync.RWMutex
	closed   bool
	stats    counters
	recovery Recovery
	jn       *journal
	// onCommit is called after each Commit (notify.go).
	onCommit atomic.Pointer[func(id string)]
	// strict restores the delivery path's earlier costs, for the
	// benchmarks' baseline: moves into active and the scheduler's moves
	// synced, every status recorded before a removal, content checked
	// again per recipient batch.
	strict bool
	spares spares
}

// Open opens (creating if needed) the queue directory dir, takes its
// lock, and recovers from a crash: files never committed are removed,
// messages left in active go back to incoming, and damaged files go to
// corrupt (see Recovery).
func Open(dir string, opts Options) (*Queue, error) {
	return open(dir, opts, osFS{})
}

func open(dir string, opts Options, fsys fileSystem) (*Queue, error) {
	q := &Queue{dir: dir, opts: opts, clock: opts.Clock, log: opts.Logger, fs: fsys,
		dirs: map[State]*os.File{}}
	if q.clock == nil {
		q.clock = realClock{}
	}
	if q.log == nil {
		q.log = slog.Default()
	}
	if q.opts.MaxBatch <= 0 {
		q.opts.MaxBatch = 256
	}
	if err := q.setup(); err != nil {
		q.closeFiles()
		return nil, fmt.Errorf("queue: opening %s: %w", dir, err)
	}
	if err := q.openJournal(); err != nil {
		q.closeFiles()
		return nil, fmt.Errorf("queue: opening %s: %w", dir, err)
	}
	if err := q.replay(); err != nil {
		q.closeFiles()
		return nil, fmt.Errorf("queue: replaying the journal of %s: %w", dir, err)
	}
	if err := q.recover(); err != nil {
		q.closeFiles()
		return nil, fmt.Errorf("queue: recovering %s: %w", dir, err)
	}
	if !opts.NoGroupCommit {
		q.commitCh = make(chan *syncJob, q.opts.MaxBatch)
		q.wg.Add(1)
		go q.committer()
	}
	return q, nil
}

// setup creates the directories (mode 0700, as Postfix's queue
// directories are) and the marker file, and takes the lock.
func (q *Queue) setup() error {
	if err := os.MkdirAll(q.dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(q.dir, markerName)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A directory with files but no marker is not ours: refuse to
		// "recover" (delete) anything in it.
		ents, err := os.ReadDir(q.dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !validState(State(e.Name())) {
				return fmt.Errorf("%s exists, is not empty and has no %s marker", q.dir, markerName)
			}
		}
		if err := writeFileSync(path, []byte(markerContent)); err != nil {
			return fmt.Errorf("writing %s: %w", markerName, err)
		}
	case err != nil:
		return err
	case !bytes.Equal(data, []byte(markerContent)):
		return fmt.Errorf("%s says %q; this version reads %q", path, strings.TrimSpace(string(data)), strings.TrimSpace(markerContent))
	}
	m, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	q.marker = m
	if err := lockDir(m); err != nil {
		return err
	}
	for _, s := range States {
		p := filepath.Join(q.dir, string(s))
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		d, err := os.Open(p)
		if err != nil {
			return err
		}
		q.dirs[s] = d
	}
	// The new directories' entries in dir must be durable too.
	top, err := os.Open(q.dir)
	if err != nil {
		return err
	}
	defer top.Close()
	return q.fs.Sync(top)
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// recover is the crash recovery described in the package doc.
func (q *Queue) recover() error {
	r := &q.recovery
	for _, s := range States {
		if s == Corrupt {
			continue
		}
		ents, err := os.ReadDir(q.path(s, ""))
		if err != nil {
			return err
		}
		for _, e := range ents {
			name := e.Name()
			p := q.path(s, name)
			if strings.HasPrefix(name, tempPrefix) {
				// Never committed: Commit renames a file away from its
				// temporary name only after it is complete and synced.
				if err := q.fs.Remove(p); err != nil {
					return err
				}
				if !strings.HasPrefix(name, spareName) { // a spare is no message
					r.Removed = append(r.Removed, string(s)+"/"+name)
				}
				continue
			}
			if !ValidID(name) || !e.Type().IsRegular() {
				q.log.Warn("queue: ignoring a file that is not a queue file", "path", p)
				continue
			}
			if s == Incoming || s == Active || q.opts.VerifyAll {
				if err := q.verify(p); err != nil {
					if !errors.Is(err, ErrCorrupt) {
						return err
					}
					if err := q.fs.Rename(p, q.path(Corrupt, name)); err != nil {
						return err
					}
					q.log.Error("queue: damaged queue file moved to corrupt", "queue_id", name, "state", string(s), "err", err.Error())
					r.Corrupt = append(r.Corrupt, name)
					continue
				}
			}
			if s == Active {
				if err := q.fs.Rename(p, q.path(Incoming, name)); err != nil {
					return err
				}
				r.Requeued = append(r.Requeued, name)
			}
		}
	}
	if len(r.Removed)+len(r.Requeued)+len(r.Corrupt)+len(r.Replayed) > 0 {
		q.log.Info("queue: recovered", "dir", q.dir, "replayed", len(r.Replayed), "removed_unfinished", len(r.Removed),
			"requeued_from_active", len(r.Requeued), "corrupt", len(r.Corrupt))
	}
	// Nothing done here needs to be durable: after another crash the
	// same files are found and the same repairs made again.
	return nil
}

func (q *Queue) verify(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	_, err = parseFile(f, fi.Size(), true)
	return err
}

// Recovery returns what Open repaired.
func (q *Queue) Recovery() Recovery { return q.recovery }

// Stats returns the disk operation counters.
func (q *Queue) Stats() Stats { return q.stats.snapshot() }

// Dir returns the queue directory.
func (q *Queue) Dir() string { return q.dir }

// Close stops the committer and releases the directory lock. Commits in
// progress finish first; later calls fail.
func (q *Queue) Close() error {
	q.closeMu.Lock()
	if q.closed {
		q.closeMu.Unlock()
		return nil
	}
	q.closed = true
	q.closeMu.Unlock()
	var err error
	if q.commitCh != nil {
		close(q.commitCh)
		q.wg.Wait()
		err = q.checkpoint()
	}
	q.spares.drain()
	return errors.Join(err, q.closeFiles())
}

func (q *Queue) closeFiles() error {
	var errs []error
	for _, d := range q.dirs {
		errs = append(errs, d.Close())
	}
	if q.jn != nil {
		errs = append(errs, q.jn.f.Close())
	}
	if q.marker != nil {
		errs = append(errs, q.marker.Close()) // releases the flock
	}
	return errors.Join(errs...)
}

// errClosed is returned by operations on a closed Queue.
var errClosed = errors.New("queue: closed")

// enter guards an operation against Close; leave must follow.
func (q *Queue) enter() error {
	q.closeMu.RLock()
	if q.closed {
		q.closeMu.RUnlock()
		return errClosed
	}
	return nil
}

func (q *Queue) leave() { q.closeMu.RUnlock() }

func (q *Queue) path(s State, name string) string {
	if name == "" {
		return filepath.Join(q.dir, string(s))
	}
	return filepath.Join(q.dir, string(s), name)
}

func (q *Queue) lockID(id string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(id))
	return &q.locks[h.Sum32()%uint32(len(q.locks))]
}

// ErrNotFound is returned (wrapped) when no queue state holds an ID.
var ErrNotFound = errors.New("no such message in the queue")

// locate finds the state holding id. The caller holds id's lock, so no
// Move of this Queue races with it.
func (q *Queue) locate(id string) (State, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("queue: %q: %w", id, ErrBadID)
	}
	for _, s := range States {
		if _, err := os.Lstat(q.path(s, id)); err == nil {
			return s, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("queue: looking for %s: %w", id, err)
		}
	}
	return "", fmt.Errorf("queue: %s: %w", id, ErrNotFound)
}

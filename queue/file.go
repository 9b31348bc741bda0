package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

var _ cleanup.Store = (*Queue)(nil)

// Create starts a new queue file in incoming under a temporary name and
// returns it with its queue ID already known. The ID is Postfix's long
// form: the creation time and the file's inode number, which no other
// file in the queue can share while this one exists (spec §7.2).
func (q *Queue) Create(ctx context.Context, arrival time.Time) (cleanup.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.leave()
	created := q.ids.next(q.clock.Now())
	f, tmp, reused := q.reuseSpare()
	if f == nil {
		tmp = q.path(Incoming, tempPrefix+strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(q.tempSeq.Add(1), 36))
		var err error
		f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("queue: creating a queue file: %w", err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("queue: creating a queue file: %w", err)
	}
	if arrival.IsZero() {
		arrival = q.clock.Now()
	}
	// The header's place goes through the write buffer with the content
	// (no write of its own); Commit writes the real header over it. An
	// empty 32 KiB buffer takes it without error.
	w := newFileWriter(f)
	_, _ = w.Write(makeHeader(0))
	return &File{
		q: q, f: f, tmp: tmp, id: formatID(created, inodeOf(fi)), arrival: arrival, reused: reused,
		w: w, crc: crc32.New(castagnoli), split: newBodySplitter(),
	}, nil
}

// fileWriters holds the 32 KiB write buffers of queue files between
// messages: one per message would be a large allocation each time (and
// garbage collector work) on the accept path.
var fileWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

func newFileWriter(f *os.File) *bufio.Writer {
	w := fileWriters.Get().(*bufio.Writer)
	w.Reset(f)
	return w
}

// releaseWriter returns the write buffer to fileWriters once the file
// takes no more writes (Commit or Abort).
func (f *File) releaseWriter() {
	if f.w != nil {
		f.w.Reset(nil)
		fileWriters.Put(f.w)
		f.w = nil
	}
}

// File is a queue file being written: cleanup.File.
type File struct {
	q       *Queue
	f       *os.File
	tmp     string
	id      string
	arrival time.Time
	w       *bufio.Writer
	crc     hash.Hash32
	split   bodySplitter
	n       int64
	err     error // first write error
	done    bool
	final   string // the committed name, once renamed
	reused  bool   // a spare (osfs.go): may hold old bytes past the end
}

// reuseSpare opens a spare queue file for Create, if there is one.
func (q *Queue) reuseSpare() (*os.File, string, bool) {
	for {
		path := q.spares.take()
		if path == "" {
			return nil, "", false
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			return f, path, true
		}
		os.Remove(path)
	}
}

// ID returns the queue ID.
func (f *File) ID() string { return f.id }

// Write appends content. It goes through a small buffer to the file, so a
// message is never held whole in memory.
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, fmt.Errorf("queue: %s: write after Commit or Abort", f.id)
	}
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.w.Write(p)
	f.crc.Write(p[:n])
	f.split.write(p[:n])
	f.n += int64(n)
	if err != nil {
		f.err = fmt.Errorf("queue: %s: writing the queue file: %w", f.id, err)
		return n, f.err
	}
	return n, nil
}

// Commit writes the envelope and makes the message durable: the file is
// fsynced, renamed to its queue ID in incoming (or hold when env.Hold is
// set), and the directory fsynced, before Commit returns nil. On error
// nothing of the message is left. env.QueueID is set to the file's ID.
//
// Once the file is handed to the disk Commit waits for the outcome even if
// ctx ends, since the message may be about to exist.
func (f *File) Commit(ctx context.Context, env *cleanup.Envelope) error {
	if f.done {
		return fmt.Errorf("queue: %s: Commit after Commit or Abort", f.id)
	}
	if err := ctx.Err(); err != nil {
		f.Abort()
		return err
	}
	if err := f.q.enter(); err != nil {
		f.Abort()
		return err
	}
	defer f.q.leave()
	f.done = true
	err := f.commit(env)
	f.releaseWriter()
	if err != nil {
		f.cleanup()
		return fmt.Errorf("queue: committing %s: %w", f.id, err)
	}
	f.q.stats.commits.Add(1)
	if !env.Hold {
		f.q.committed(f.id) // a held message is no work for the scheduler
	}
	return nil
}

func (f *File) commit(env *cleanup.Envelope) error {
	if f.err != nil {
		return f.err
	}
	if env == nil {
		return errors.New("no envelope")
	}
	e := *env
	e.QueueID = f.id
	if e.Arrival.IsZero() {
		e.Arrival = f.arrival
	}
	hl, bs := f.split.split(f.n)
	payload, err := json.Marshal(envelopeRecord{Version: fileVersion, ID: f.id,
		ContentLen: f.n, ContentCRC: f.crc.Sum32(), HeaderLen: hl, BodyStart: bs, Env: e})
	if err != nil {
		return fmt.Errorf("encoding the envelope: %w", err)
	}
	if _, err := f.w.Write(appendRecord(nil, kindEnvelope, payload)); err != nil {
		return fmt.Errorf("writing the envelope: %w", err)
	}
	if err := f.w.Flush(); err != nil {
		return fmt.Errorf("writing the queue file: %w", err)
	}
	if _, err := f.f.WriteAt(makeHeader(f.n), 0); err != nil {
		return fmt.Errorf("writing the header: %w", err)
	}
	size := headerSize + f.n + int64(recordOverhead+len(payload))
	if f.reused {
		// A spare's old content may go on past the new end.
		if err := f.f.Truncate(size); err != nil {
			return fmt.Errorf("writing the queue file: %w", err)
		}
	}
	state := Incoming
	if e.Hold {
		state = Hold // HOLD action (spec §7.1)
	}
	final := f.q.path(state, f.id)
	dirs := []State{Incoming}
	if state != Incoming {
		dirs = append(dirs, state) // the temporary name's removal and the new name
	}
	if f.q.commitCh != nil && size <= journalMaxMessage {
		// Group commit: a copy in the journal makes it durable (see
		// journal.go); the file itself is synced at the next checkpoint.
		buf := make([]byte, size)
		if _, err := f.f.ReadAt(buf, 0); err != nil {
			return fmt.Errorf("reading the queue file back: %w", err)
		}
		err = f.q.submit(&syncJob{rec: journalMessage(f.id, state, buf), recKind: kindJournalMessage,
			id: f.id, from: f.tmp, to: final, src: f.f})
	} else {
		err = f.q.durable(f.f, f.tmp, final, dirs...)
	}
	if err != nil {
		// Whether the rename happened decides what cleanup removes.
		if _, serr := os.Lstat(final); serr == nil {
			f.final = final
		}
		return err
	}
	f.final = final // durable and submit return nil only once renamed
	env.QueueID = f.id
	return f.f.Close()
}

// cleanup removes whatever a failed Commit left, so that nothing of an
// unacknowledged message is visible, and a crash before this runs leaves
// at worst a complete file, never a torn one.
func (f *File) cleanup() {
	f.f.Close()
	if f.final != "" {
		if err := f.q.fs.Remove(f.final); err == nil {
			return
		}
	}
	f.q.fs.Remove(f.tmp)
}

// Abort discards the file. It is safe after a failed Commit.
func (f *File) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	f.releaseWriter()
	f.f.Close()
	if err := os.Remove(f.tmp); err != nil {
		return fmt.Errorf("queue: aborting %s: %w", f.id, err)
	}
	return nil
}

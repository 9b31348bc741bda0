package queue

import (
	"fmt"
	"os"
	"path/filepath"
)

// The committer: one goroutine that runs batches of durability requests
// (journal records, renames, directory fsyncs), so concurrent callers
// share the fsyncs. See the package doc and journal.go for the crash
// argument. Within a batch the order is fixed: journal records are
// appended and fdatasynced first, then files named in the requests are
// fsynced, then renamed (or removed), then each directory named is
// fsynced once; a
// request is answered only after all of its steps.
//
// With group commit, a small message that journal.mode sends the direct
// way (see journal.go) skips the committer: its caller does what Commit
// does without group commit.
//
// Without group commit each request runs as a batch of one in the
// caller. (Measured alternatives to the journal on ext4: the committer
// fsyncing each batch's files, in sequence or after starting their
// write-back together, shared nothing; parallel fsyncs from the callers
// get the kernel's journal batching but still cost one fsync per
// message.)

// syncJob is one request to the committer.
type syncJob struct {
	// rec is a journal record payload (a message copy or a tombstone,
	// by recKind) to append and fdatasync first, if set; id names a
	// journaled message.
	rec     []byte
	recKind byte
	id      string
	file    *os.File // fsync first, if set
	// src is the caller's open handle of the file named by from; a
	// journaled message must set it, for submit may send it the direct
	// way instead. Never fsynced through this field.
	src      *os.File
	from, to string  // then rename, if from is set
	unlink   string  // or remove this file, if set
	dirs     []State // then fsync these directories
	err      error
	done     chan struct{}
}

func (q *Queue) committer() {
	defer q.wg.Done()
	for j := range q.commitCh {
		batch := []*syncJob{j}
	drain:
		for len(batch) < q.opts.MaxBatch {
			select {
			case j2, ok := <-q.commitCh:
				if !ok {
					break drain
				}
				batch = append(batch, j2)
			default:
				break drain
			}
		}
		q.runBatch(batch)
		for _, j := range batch {
			close(j.done)
		}
		if q.jn.size > q.jn.limit {
			if err := q.checkpoint(); err != nil {
				// The journal keeps every message safe meanwhile.
				q.log.Error("queue: journal checkpoint failed", "err", err.Error())
			}
		}
	}
}

func (q *Queue) runBatch(batch []*syncJob) {
	q.stats.batches.Add(1)
	var recs []byte
	for _, j := range batch {
		if j.rec != nil {
			recs = appendJournalRecord(recs, q.jn.epoch, j.recKind, j.rec)
		}
	}
	if len(recs) > 0 {
		if err := q.journalWrite(recs); err != nil {
			for _, j := range batch {
				if j.rec != nil {
					j.err = err
				}
			}
		} else {
			for _, j := range batch {
				if j.id != "" {
					q.jn.pending[j.id] = true
				}
			}
		}
	}
	for _, j := range batch {
		if j.file != nil && j.err == nil {
			j.err = q.syncFile(j.file)
		}
	}
	for _, j := range batch {
		if j.err == nil && j.from != "" {
			if err := q.fs.Rename(j.from, j.to); err != nil {
				j.err = fmt.Errorf("naming the queue file: %w", err)
			}
		}
		// Here, not in the caller, so that no checkpoint (which empties
		// the journal of its tombstone) can come between the tombstone
		// and the unlink.
		if j.err == nil && j.unlink != "" {
			j.err = q.fs.Remove(j.unlink)
		}
	}
	errs := map[State]error{}
	for _, j := range batch {
		if j.err != nil {
			continue
		}
		for _, s := range j.dirs {
			err, done := errs[s]
			if !done {
				err = q.syncDir(s)
				errs[s] = err
			}
			if err != nil && j.err == nil {
				j.err = err
			}
		}
	}
}

// durable runs one request: through the committer, or at once when group
// commit is off.
func (q *Queue) durable(file *os.File, from, to string, dirs ...State) error {
	return q.submit(&syncJob{file: file, from: from, to: to, dirs: dirs})
}

// submit runs a request through the committer, or at once when group
// commit is off (then it must carry no journal record).
func (q *Queue) submit(j *syncJob) error {
	if q.commitCh == nil {
		q.runBatch([]*syncJob{j})
		return j.err
	}
	switch j.recKind {
	case kindJournalMessage:
		q.jn.mode.inflight.Add(1)
		defer q.jn.mode.inflight.Add(-1)
		if q.jn.mode.commitPath(j.id) {
			// The direct path (journal.go): no copy; the caller does
			// what Commit does without group commit (its fsyncs overlap
			// with the other callers', and the file system shares its
			// commits among them).
			d := &syncJob{file: j.src, from: j.from, to: j.to, dirs: []State{Incoming}}
			if to := filepath.Dir(j.to); to != q.path(Incoming, "") {
				d.dirs = append(d.dirs, State(filepath.Base(to)))
			}
			q.runBatch([]*syncJob{d})
			return d.err
		}
	case kindJournalTombstone:
		q.jn.mode.removed(string(j.rec))
	}
	// The file fsync is the caller's: concurrent callers' fsyncs overlap,
	// and the file system folds them into shared journal commits, while
	// the committer is busy with the previous batch's directory fsync.
	if j.file != nil {
		if err := q.syncFile(j.file); err != nil {
			return err
		}
		j.file = nil
	}
	j.done = make(chan struct{})
	q.commitCh <- j
	<-j.done
	return j.err
}

// syncDirs makes earlier renames, creations and removals in the given
// state directories durable.
func (q *Queue) syncDirs(states []State) error {
	return q.durable(nil, "", "", states...)
}

func (q *Queue) syncDir(s State) error {
	q.stats.dirSyncs.Add(1)
	if err := q.fs.Sync(q.dirs[s]); err != nil {
		return fmt.Errorf("syncing the %s directory: %w", s, err)
	}
	return nil
}

func (q *Queue) syncFile(f *os.File) error {
	q.stats.fileSyncs.Add(1)
	if err := q.fs.Sync(f); err != nil {
		return fmt.Errorf("syncing the queue file: %w", err)
	}
	return nil
}

package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// The commit journal: how group commit gets below one fsync per message.
//
// With group commit on, Commit does not fsync its queue file. The
// committer appends a copy of each small queue file of the batch (up to
// journalMaxMessage bytes: content, envelope and all) to one journal file,
// fdatasyncs the journal once for the whole batch, and only then renames
// the queue files to their IDs and answers. A crash may lose the queue
// file's unsynced data or its new name, but not the journal copy: Open
// replays the journal, rewriting every journaled message whose file is
// missing or fails its checksum. Remove appends a tombstone (durable
// before the file is unlinked) instead of fsyncing the directory, and
// replay deletes tombstoned messages, so a delivered message is not
// resurrected: the tombstone comes first because a journal copy may lack
// status records appended since, and must never stand in for a file that
// was removed.
//
// When the journal passes journalCheckpointSize, and at Close, the
// committer checkpoints: it fsyncs every queue file journaled since the
// last checkpoint that still exists (in parallel) and every state
// directory, and then empties the journal (a new epoch). After that those messages
// are durable on their own, and their unlinks too.
//
// A journal copy pays off only for a message removed before the next
// checkpoint; one still queued then gets its own fsync there anyway, on
// top of its share of the journal's. So the committer watches how many
// messages are removed soon after their commit (journal.mode): when
// fewer than half of a window's commits are, and several callers commit
// at once (their fsyncs then overlap), small messages are
// committed as without group commit (file fsync, rename, directory
// fsync, in the caller), until removals catch up again. Either way the
// message is durable before Commit returns; only the cost differs.
//
// Messages larger than journalMaxMessage are not copied: their Commit
// fsyncs the file and the batch fsyncs the directory, as without the
// journal.
const (
	journalName           = "journal"
	journalMaxMessage     = 256 << 10
	journalCheckpointSize = 32 << 20

	kindJournalMessage   = 'M'
	kindJournalTombstone = 'X'

	// The journal starts with a header: "PKQJ", 4 zero bytes, and the
	// epoch (8 bytes). Every record's payload starts with the epoch it
	// was written in. Emptying the journal is writing a new epoch into
	// the header: the file keeps its size and old records, which replay
	// ignores. The file is grown with zeros (growJournal), so
	// that appending a batch overwrites allocated blocks and its
	// fdatasync has no metadata to commit, only data.
	journalMagic  = "PKQJ"
	journalHeader = 16
	journalChunk  = 4 << 20
)

// journal is the committer's state; only the committer goroutine (and
// Open and Close, when it is not running) touch it.
type journal struct {
	f       *os.File
	size    int64 // the end of the current epoch's records
	alloc   int64 // the file's size
	epoch   uint64
	pending map[string]bool // IDs journaled since the last checkpoint
	limit   int64           // checkpoint when the journal is larger
	mode    commitMode
}

// commitMode chooses between the journal and the direct path for small
// messages (see above), from the last window of commits.
type commitMode struct {
	inflight  atomic.Int64 // commits in submit now
	mu        sync.Mutex
	cur, prev map[string]bool // IDs committed in this and the last window
	commits   int             // in this window
	quick     int             // of them, removed within two windows
	busy      int64           // the sum of inflight seen by them
	direct    bool
}

// modeWindow is how many commits the choice looks back at; a removal
// counts as soon when it comes within two windows of the commit, about
// the span of a journal checkpoint with 4 KB messages. A variable for the
// tests.
var modeWindow = 4096

// commitPath records a commit and says whether it should take the direct
// path: when fewer than half of the last window's commits were removed
// soon, and commits came concurrently (at least directConcurrency on
// average), so that the callers' own fsyncs overlap. A lone committer
// keeps the journal, whose checkpoint fsyncs the files 32 at a time.
func (m *commitMode) commitPath(id string) (direct bool) {
	n := m.inflight.Load()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		m.cur, m.prev = map[string]bool{}, map[string]bool{}
	}
	m.cur[id] = true
	m.commits++
	m.busy += n
	if m.commits >= modeWindow {
		m.direct = 2*m.quick < m.commits && m.busy >= directConcurrency*int64(m.commits)
		m.prev, m.cur = m.cur, m.prev
		clear(m.cur)
		m.commits, m.quick, m.busy = 0, 0, 0
	}
	return m.direct
}

// directConcurrency is the average number of concurrent commits from
// which the direct path is taken.
const directConcurrency = 4

// removed records a Remove; one soon after the commit counts for the
// journal.
func (m *commitMode) removed(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur[id] || m.prev[id] {
		delete(m.cur, id)
		delete(m.prev, id)
		m.quick++
	}
}

func (q *Queue) openJournal() error {
	f, err := os.OpenFile(filepath.Join(q.dir, journalName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	q.jn = &journal{f: f, pending: map[string]bool{}, limit: journalCheckpointSize}
	return nil
}

// journalMessage builds the journal payload of a committed queue file.
func journalMessage(id string, state State, file []byte) []byte {
	payload := make([]byte, 0, 2+len(id)+len(state)+len(file))
	payload = append(payload, byte(len(id)))
	payload = append(payload, id...)
	payload = append(payload, byte(len(state)))
	payload = append(payload, state...)
	payload = append(payload, file...)
	return payload
}

// appendJournalRecord frames a journal record of the given epoch.
func appendJournalRecord(b []byte, epoch uint64, kind byte, payload []byte) []byte {
	p := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint64(p, epoch)
	return appendRecord(b, kind, append(p, payload...))
}

// resetJournal starts a new, empty epoch.
func (q *Queue) resetJournal(epoch uint64) error {
	j := q.jn
	h := make([]byte, journalHeader)
	copy(h, journalMagic)
	binary.BigEndian.PutUint64(h[8:], epoch)
	if _, err := j.f.WriteAt(h, 0); err != nil {
		return fmt.Errorf("writing the journal: %w", err)
	}
	q.stats.journalSyncs.Add(1)
	if err := q.fs.Sync(j.f); err != nil {
		return fmt.Errorf("syncing the journal: %w", err)
	}
	j.epoch, j.size = epoch, journalHeader
	j.alloc = max(j.alloc, journalHeader)
	return nil
}

// growJournal extends the file with zeros to hold need bytes: by its
// size again (at least 256 KB, at most journalChunk), so that a queue
// that commits little writes few zeros.
func (q *Queue) growJournal(need int64) error {
	j := q.jn
	step := min(max(j.alloc, 256<<10), journalChunk)
	target := max(j.alloc, need) + step
	zeros := make([]byte, 1<<20)
	for off := j.alloc; off < target; off += int64(len(zeros)) {
		if _, err := j.f.WriteAt(zeros[:min(int64(len(zeros)), target-off)], off); err != nil {
			return fmt.Errorf("growing the journal: %w", err)
		}
	}
	j.alloc = target
	return nil
}

func parseJournalMessage(p []byte) (id string, state State, file []byte, ok bool) {
	if len(p) < 1 || len(p) < 1+int(p[0])+1 {
		return "", "", nil, false
	}
	id = string(p[1 : 1+p[0]])
	p = p[1+p[0]:]
	if len(p) < 1+int(p[0]) {
		return "", "", nil, false
	}
	state = State(p[1 : 1+p[0]])
	return id, state, p[1+p[0]:], ValidID(id) && validState(state)
}

// journalWrite appends the batch's records and fdatasyncs the journal.
// On failure it cuts the journal back, so that a message whose Commit
// failed is not replayed later if that can be helped.
func (q *Queue) journalWrite(recs []byte) error {
	j := q.jn
	sync := q.fs.Datasync
	if j.size+int64(len(recs)) > j.alloc {
		if err := q.growJournal(j.size + int64(len(recs))); err != nil {
			return err
		}
		sync = q.fs.Sync // the size changed too
	}
	undo := func() { j.f.WriteAt(make([]byte, len(recs)), j.size) }
	if _, err := j.f.WriteAt(recs, j.size); err != nil {
		undo()
		return fmt.Errorf("writing the journal: %w", err)
	}
	q.stats.journalSyncs.Add(1)
	if err := sync(j.f); err != nil {
		undo()
		return fmt.Errorf("syncing the journal: %w", err)
	}
	j.size += int64(len(recs))
	return nil
}

// checkpoint makes every journaled message durable on its own and empties
// the journal.
func (q *Queue) checkpoint() error {
	j := q.jn
	if j.size <= journalHeader {
		return nil
	}
	q.stats.checkpoints.Add(1)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, 32)
	for id := range j.pending {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := q.syncByID(id); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	for _, s := range States {
		if err := q.syncDir(s); err != nil {
			return err
		}
	}
	if err := q.resetJournal(j.epoch + 1); err != nil {
		return err
	}
	clear(j.pending)
	return nil
}

// syncByID fsyncs a message's file wherever it is now; one that is gone
// was removed (its tombstone is in the journal or the directory fsync
// that follows makes the removal durable).
func (q *Queue) syncByID(id string) error {
	for range 3 { // a concurrent Move may rename it under us
		for _, s := range States {
			f, err := os.Open(q.path(s, id))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
			err = q.syncFile(f)
			f.Close()
			return err
		}
	}
	return nil
}

// replay is the journal half of recovery, run by Open before anything
// else looks at the state directories.
func (q *Queue) replay() error {
	j := q.jn
	fi, err := j.f.Stat()
	if err != nil {
		return err
	}
	j.alloc = fi.Size()
	epoch := journalEpoch(j.f, fi.Size())
	msgs, order, dead, err := scanJournal(j.f, fi.Size(), epoch)
	if err != nil {
		return err
	}
	for id := range dead {
		if !ValidID(id) {
			continue
		}
		for _, s := range States {
			if err := q.fs.Remove(q.path(s, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	for _, id := range order {
		if dead[id] {
			continue
		}
		e := msgs[id]
		where := e.state
		found := false
		for _, s := range States {
			if _, err := os.Lstat(q.path(s, id)); err == nil {
				where, found = s, true
				break
			}
		}
		if found && q.verify(q.path(where, id)) == nil {
			continue
		}
		if _, err := parseFile(byteReaderAt(e.file), int64(len(e.file)), true); err != nil {
			continue // cannot happen with a record that passed its CRC
		}
		tmp := q.path(where, tempPrefix+"replay-"+id)
		os.Remove(tmp) // from a replay cut short
		if err := writeFileSync(tmp, e.file); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("replaying %s: %w", id, err)
		}
		if err := q.fs.Rename(tmp, q.path(where, id)); err != nil {
			return fmt.Errorf("replaying %s: %w", id, err)
		}
		q.recovery.Replayed = append(q.recovery.Replayed, id)
	}
	for _, s := range States {
		if err := q.syncDir(s); err != nil {
			return err
		}
	}
	return q.resetJournal(epoch + 1)
}

// journalEpoch reads the journal header's epoch; 0 for a new journal.
func journalEpoch(r io.ReaderAt, size int64) uint64 {
	h := make([]byte, journalHeader)
	if size < journalHeader {
		return 0
	}
	if _, err := r.ReadAt(h, 0); err != nil || string(h[:4]) != journalMagic {
		return 0
	}
	return binary.BigEndian.Uint64(h[8:])
}

type journalEntry struct {
	state State
	file  []byte
}

// scanJournal reads the journal's records up to the first torn one: the
// messages (the last copy of each, and the order they first appeared in)
// and the tombstones.
func scanJournal(r io.ReaderAt, size int64, epoch uint64) (msgs map[string]journalEntry, order []string, dead map[string]bool, err error) {
	msgs, dead = map[string]journalEntry{}, map[string]bool{}
	if epoch == 0 {
		return msgs, order, dead, nil
	}
	for off := int64(journalHeader); ; {
		kind, payload, next, err := readRecord(r, off, size)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errBadRecord) {
			// The end: zeros, or a batch torn by the crash (never
			// acknowledged).
			return msgs, order, dead, nil
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading the journal: %w", err)
		}
		if len(payload) < 8 || binary.BigEndian.Uint64(payload) != epoch {
			return msgs, order, dead, nil // an earlier epoch's record
		}
		payload = payload[8:]
		switch kind {
		case kindJournalMessage:
			if id, st, file, ok := parseJournalMessage(payload); ok {
				if _, seen := msgs[id]; !seen {
					order = append(order, id)
				}
				msgs[id] = journalEntry{st, file}
			}
		case kindJournalTombstone:
			dead[string(payload)] = true
		}
		off = next
	}
}

type byteReaderAt []byte

func (b byteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

// Outcome is where a recipient stands. The names follow RFC 3464's
// Action field.
type Outcome uint8

const (
	// Pending: not yet tried, or tried with no result recorded.
	Pending Outcome = iota
	// Delivered: done (delivered, relayed or expanded); a DSN SUCCESS
	// notice is due if the recipient asked for one (Postfix's trace log).
	Delivered
	// Delayed: failed temporarily (deferred); tried again later. The
	// reason is what postqueue -p shows and delay warnings quote
	// (Postfix's defer log).
	Delayed
	// Failed: failed permanently (bounced); a non-delivery notice is due
	// (Postfix's bounce log).
	Failed
)

// The names are RFC 3464 Action values, except "pending".
var outcomeNames = [...]string{"pending", "delivered", "delayed", "failed"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", o)
}

// Status is the delivery status of one recipient: what Postfix keeps in
// the bounce, defer and trace logs, kept here inside the queue file.
type Status struct {
	// Rcpt is the index of the recipient in Envelope.Recipients.
	Rcpt    int     `json:"rcpt"`
	Outcome Outcome `json:"outcome"`
	// DSN is the RFC 3463 status code ("2.0.0", "4.4.1", "5.1.1").
	DSN string `json:"dsn,omitempty"`
	// Action is the RFC 3464 action when it is not the Outcome's usual
	// one ("relayed", "expanded").
	Action string `json:"action,omitempty"`
	// Relay is where the attempt went ("mx.example.org[192.0.2.1]:25",
	// "local").
	Relay string `json:"relay,omitempty"`
	// Reason is the text logged and put in DSNs ("host ... said: 550
	// 5.1.1 no such user").
	Reason string `json:"reason,omitempty"`
	// At is when the status was recorded; MarkRecipients fills it in
	// when zero.
	At time.Time `json:"at,omitzero"`
}

// Message is a queued message as Read returns it. Its content stays on
// disk; Close releases the file.
type Message struct {
	ID    string
	State State
	// Envelope is what was committed. Envelope.Size is what cleanup said;
	// Size is what the file holds.
	Envelope cleanup.Envelope
	// Status has one entry per recipient, in Envelope.Recipients order:
	// the latest recorded status (Outcome Pending if none).
	Status []Status
	// Attrs are the message attributes set with SetAttr.
	Attrs map[string]string
	// ModTime is the file's modification time: for a deferred message,
	// the time of the next retry (Defer).
	ModTime time.Time
	Size    int64

	f                    *os.File
	headerLen, bodyStart int64
	q                    *Queue // counts the open reader (osfs.go, spares)
}

// Content returns a reader of the whole content (CRLF lines).
func (m *Message) Content() *io.SectionReader { return io.NewSectionReader(m.f, headerSize, m.Size) }

// Header returns a reader of the header section, without the empty line
// that ends it (postcat -h).
func (m *Message) Header() *io.SectionReader {
	return io.NewSectionReader(m.f, headerSize, m.headerLen)
}

// Body returns a reader of the body, after the empty line (postcat -b).
func (m *Message) Body() *io.SectionReader {
	return io.NewSectionReader(m.f, headerSize+m.bodyStart, m.Size-m.bodyStart)
}

// Pending returns the indexes of the recipients still to be delivered:
// those neither delivered nor bounced.
func (m *Message) Pending() []int {
	var idx []int
	for i, s := range m.Status {
		if s.Outcome == Pending || s.Outcome == Delayed {
			idx = append(idx, i)
		}
	}
	return idx
}

// Close closes the message file.
func (m *Message) Close() error {
	if m.q != nil {
		m.q.spares.closeReader(m.ID)
		m.q = nil
	}
	return m.f.Close()
}

// contentReader is a reader of a message's content that counts as an
// open reader of the message.
type contentReader struct {
	*io.SectionReader
	f    *os.File
	q    *Queue
	id   string
	once sync.Once
}

func (c *contentReader) Close() error {
	c.once.Do(func() { c.q.spares.closeReader(c.id) })
	return c.f.Close()
}

// openContent opens the content of a message the caller has already Read
// whole, for a delivery or a notice: the content of a queue file never
// changes once committed (status records go after it), so it is not
// parsed and checked again for every recipient batch.
func (q *Queue) openContent(id string, size int64) (io.ReadCloser, error) {
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.leave()
	mu := q.lockID(id)
	mu.Lock()
	defer mu.Unlock()
	f, err := os.Open(q.path(Active, id)) // where the scheduler keeps it
	if errors.Is(err, fs.ErrNotExist) {
		var s State
		if s, err = q.locate(id); err == nil {
			f, err = os.Open(q.path(s, id))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("queue: reading %s: %w", id, err)
	}
	q.spares.openReader(id)
	return &contentReader{SectionReader: io.NewSectionReader(f, headerSize, size), f: f, q: q, id: id}, nil
}

// Read opens a message and checks it whole (envelope and content
// checksums): a damaged file gives an error wrapping ErrCorrupt, so the
// caller can Move it to Corrupt instead of delivering it. The caller must
// Close the Message.
func (q *Queue) Read(id string) (*Message, error) {
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.leave()
	mu := q.lockID(id)
	mu.Lock()
	defer mu.Unlock()
	s, err := q.locate(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(q.path(s, id))
	if err != nil {
		return nil, fmt.Errorf("queue: reading %s: %w", id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("queue: reading %s: %w", id, err)
	}
	p, err := parseFile(f, fi.Size(), true)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("queue: reading %s/%s: %w", s, id, err)
	}
	q.spares.openReader(id)
	return &Message{ID: id, State: s, Envelope: p.env.Env, Status: p.status, Attrs: p.attrs,
		ModTime: fi.ModTime(), Size: p.env.ContentLen, f: f,
		headerLen: p.env.HeaderLen, bodyStart: p.env.BodyStart, q: q}, nil
}

// Entry is one message in a List or Walk.
type Entry struct {
	ID    string
	State State
	// ModTime is the file's modification time: for a deferred message,
	// its next retry time.
	ModTime time.Time
	// FileSize is the size of the queue file (content, envelope and
	// status records).
	FileSize int64
}

// Walk calls fn for each message in state, in no particular order,
// without opening the files. A message moved or removed during the walk
// may be missed or seen twice. An error from fn stops the walk and is
// returned.
func (q *Queue) Walk(state State, fn func(Entry) error) error {
	if !validState(state) {
		return fmt.Errorf("queue: no state %q", state)
	}
	d, err := os.Open(q.path(state, ""))
	if err != nil {
		return fmt.Errorf("queue: listing %s: %w", state, err)
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, tempPrefix) || !ValidID(name) {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // moved meanwhile
			}
			if err != nil {
				return fmt.Errorf("queue: listing %s: %w", state, err)
			}
			if err := fn(Entry{ID: name, State: state, ModTime: fi.ModTime(), FileSize: fi.Size()}); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("queue: listing %s: %w", state, err)
		}
	}
}

// List returns the messages in state sorted by queue ID, which is
// creation order.
func (q *Queue) List(state State) ([]Entry, error) {
	var out []Entry
	err := q.Walk(state, func(e Entry) error { out = append(out, e); return nil })
	sort.Slice(out, func(i, j int) bool { return lessID(out[i].ID, out[j].ID) })
	return out, err
}

// lessID orders long IDs by creation time: shorter seconds first, then
// the string, whose alphabet is in ASCII order.
func lessID(a, b string) bool {
	ai, bi := strings.LastIndexByte(a, idSep), strings.LastIndexByte(b, idSep)
	if ai != bi {
		return ai < bi
	}
	return a < b
}

// Move renames a message into another state and makes that durable. A
// message moved to Deferred keeps its file time; use Defer to set the
// retry time. A move into Active is not synced: Open sends whatever it
// finds in active back to incoming, so after a crash the message is
// scheduled again whether or not the move reached the disk.
func (q *Queue) Move(ctx context.Context, id string, to State) error {
	return q.move(ctx, id, to, nil, time.Time{})
}

// Defer moves a message to deferred with its next retry time: the file's
// modification time is set to until, as Postfix sets a deferred file's
// mtime into the future (spec §7.4). A retry time lost in a crash only
// makes the retry come early.
func (q *Queue) Defer(ctx context.Context, id string, until time.Time) error {
	return q.move(ctx, id, Deferred, nil, until)
}

// Hold moves a message to hold (postsuper -h) from incoming, active or
// deferred. Held messages are not scheduled and do not expire.
func (q *Queue) Hold(ctx context.Context, id string) error {
	return q.move(ctx, id, Hold, []State{Incoming, Active, Deferred}, time.Time{})
}

// Release moves a held message to deferred, due at once (postsuper -H).
func (q *Queue) Release(ctx context.Context, id string) error {
	return q.move(ctx, id, Deferred, []State{Hold}, q.clock.Now())
}

// Requeue moves a message from any state but corrupt back to incoming, due
// at once, for the scheduler to take up again with the same queue ID and
// arrival time. (Postfix's postsuper -r goes further and runs the message
// through cleanup again with a new ID; that is the admin layer's job.)
func (q *Queue) Requeue(ctx context.Context, id string) error {
	return q.move(ctx, id, Incoming, []State{Incoming, Active, Deferred, Hold}, q.clock.Now())
}

// move renames a message, durably unless it goes to active (see Move).
func (q *Queue) move(ctx context.Context, id string, to State, from []State, mtime time.Time) error {
	return q.rename(ctx, id, to, from, mtime, to != Active || q.strict)
}

// schedMove is the scheduler's move of a message it took into active:
// back to incoming at Stop, or to deferred after an attempt. Neither is
// synced (unless q.strict): a crash before the rename reaches the disk
// leaves the file in active (or where it was before), Open sends it back
// to incoming, and it is only tried again sooner, with the statuses
// recorded so far. Postfix's qmgr syncs none of its moves either.
func (q *Queue) schedMove(ctx context.Context, id string, to State, mtime time.Time) error {
	return q.rename(ctx, id, to, []State{Active}, mtime, q.strict)
}

// rename moves a message from one of the states from (any, when nil) to
// to, setting its file time first when mtime is set, and fsyncs both
// directories when sync is set.
func (q *Queue) rename(ctx context.Context, id string, to State, from []State, mtime time.Time, sync bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validState(to) {
		return fmt.Errorf("queue: no state %q", to)
	}
	if err := q.enter(); err != nil {
		return err
	}
	defer q.leave()
	mu := q.lockID(id)
	mu.Lock()
	defer mu.Unlock()
	s, err := q.locate(id)
	if err != nil {
		return err
	}
	if from != nil && !containsState(from, s) {
		return fmt.Errorf("queue: moving %s to %s: it is in %s", id, to, s)
	}
	src := q.path(s, id)
	if !mtime.IsZero() {
		if err := os.Chtimes(src, mtime, mtime); err != nil {
			return fmt.Errorf("queue: setting the retry time of %s: %w", id, err)
		}
	}
	if s == to {
		return nil
	}
	if err := q.fs.Rename(src, q.path(to, id)); err != nil {
		return fmt.Errorf("queue: moving %s to %s: %w", id, to, err)
	}
	if !sync {
		return nil
	}
	if err := q.syncDirs([]State{s, to}); err != nil {
		return fmt.Errorf("queue: moving %s to %s: %w", id, to, err)
	}
	return nil
}

func containsState(list []State, s State) bool {
	for _, t := range list {
		if t == s {
			return true
		}
	}
	return false
}

// Remove deletes a message (delivered, bounced, or postsuper -d) and
// makes the removal durable, so a crash does not deliver it again.
func (q *Queue) Remove(ctx context.Context, id string) error {
	return q.remove(ctx, id, false)
}

// remove is Remove; with recycle, the file is kept as a spare for Create
// (osfs.go) when nothing has it open.
func (q *Queue) remove(ctx context.Context, id string, recycle bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := q.enter(); err != nil {
		return err
	}
	defer q.leave()
	mu := q.lockID(id)
	mu.Lock()
	defer mu.Unlock()
	s, err := q.locate(id)
	if err != nil {
		return err
	}
	spare := ""
	if recycle {
		// A second name first, so the inode outlives the removal; it
		// starts with '.', so it is never taken for the message.
		if spare = q.spares.reserve(q, id); spare != "" && os.Link(q.path(s, id), spare) != nil {
			spare = ""
		}
	}
	if q.commitCh != nil {
		// A tombstone in the journal, durable before the unlink: replay
		// deletes the file if the unlink does not reach the disk.
		err = q.submit(&syncJob{rec: []byte(id), recKind: kindJournalTombstone, unlink: q.path(s, id)})
	} else if err = q.fs.Remove(q.path(s, id)); err == nil {
		err = q.syncDirs([]State{s})
	}
	if spare != "" {
		if err == nil {
			q.spares.put(spare)
		} else {
			os.Remove(spare) // the message may still be there
		}
	}
	if err != nil {
		return fmt.Errorf("queue: removing %s: %w", id, err)
	}
	return nil
}

// MarkRecipients records delivery statuses durably: it appends a status
// record to the queue file and fsyncs it (concurrent calls overlap their
// fsyncs) before returning. Later records override earlier ones per
// recipient.
func (q *Queue) MarkRecipients(ctx context.Context, id string, st []Status) error {
	for _, s := range st {
		if s.Outcome > Failed {
			return fmt.Errorf("queue: marking %s: bad outcome %d", id, s.Outcome)
		}
	}
	return q.appendStatus(ctx, id, statusRecord{Status: st})
}

// SetAttr sets named message attributes durably ("" deletes one): the
// scheduler's per-message flags, such as a delay warning already sent or
// a forced expiry (postsuper -f).
func (q *Queue) SetAttr(ctx context.Context, id string, attrs map[string]string) error {
	return q.appendStatus(ctx, id, statusRecord{Attrs: attrs})
}

func (q *Queue) appendStatus(ctx context.Context, id string, rec statusRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := q.enter(); err != nil {
		return err
	}
	defer q.leave()
	mu := q.lockID(id)
	mu.Lock()
	defer mu.Unlock()
	err := func() error {
		s, err := q.locate(id)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(q.path(s, id), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		p, err := parseFile(f, fi.Size(), false)
		if err != nil {
			return err
		}
		rec.At = q.clock.Now()
		for i := range rec.Status {
			if r := rec.Status[i].Rcpt; r < 0 || r >= len(p.status) {
				return fmt.Errorf("no recipient %d (the message has %d)", r, len(p.status))
			}
			if rec.Status[i].At.IsZero() {
				rec.Status[i].At = rec.At
			}
		}
		payload, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		// Overwrite a torn record a crash may have left at the end.
		if p.validEnd < fi.Size() {
			if err := f.Truncate(p.validEnd); err != nil {
				return err
			}
		}
		if _, err := f.WriteAt(appendRecord(nil, kindStatus, payload), p.validEnd); err != nil {
			return err
		}
		// The directory too: with group commit the file's name may not be
		// durable yet, and a journal replay would bring back the copy
		// without this record.
		return q.durable(f, "", "", s)
	}()
	if err != nil {
		return fmt.Errorf("queue: recording the status of %s: %w", id, err)
	}
	return nil
}

package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

// countFS counts the syncs the queue asks of the disk, by kind, below the
// queue's own Stats: what strace would see as fsync and fdatasync.
type countFS struct {
	osFS
	dir, file, journal atomic.Int64
}

func (c *countFS) Sync(f *os.File) error {
	switch {
	case isDir(f):
		c.dir.Add(1)
	case filepath.Base(f.Name()) == journalName:
		c.journal.Add(1)
	default:
		c.file.Add(1)
	}
	return c.osFS.Sync(f)
}

func (c *countFS) Datasync(f *os.File) error {
	c.journal.Add(1)
	return c.osFS.Datasync(f)
}

type syncCount struct{ dir, file, journal int64 }

func (c *countFS) snapshot() syncCount {
	return syncCount{c.dir.Load(), c.file.Load(), c.journal.Load()}
}

func (a syncCount) minus(b syncCount) syncCount {
	return syncCount{a.dir - b.dir, a.file - b.file, a.journal - b.journal}
}

// deliverCounted commits n messages (recipients per message as rcpts
// says: "d" delivered, "l" deferred), then runs one scheduler pass over
// them and returns the syncs of the pass alone, with the queue.
func deliverCounted(t *testing.T, opts Options, strict bool, n int, rcpts string) (syncCount, *Queue) {
	t.Helper()
	fsys := &countFS{}
	opts.Logger = quiet
	opts.Clock = NewFakeClock(t0)
	q, err := open(t.TempDir(), opts, fsys)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	q.strict = strict
	for i := range n {
		env := &cleanup.Envelope{Arrival: t0, Sender: "alice@example.com"}
		for j := range rcpts {
			env.Recipients = append(env.Recipients, cleanup.Recipient{Addr: fmt.Sprintf("u%d-%d@d%d.example", i, j, j)})
		}
		commit(t, q, testContent, env)
	}
	d := DelivererFunc(func(_ context.Context, d *Delivery) []Result {
		rc, err := d.Open()
		if err != nil {
			t.Error(err)
			return nil
		}
		if got := readAll(t, rc); got != testContent {
			t.Errorf("delivered content %q, want %q", got, testContent)
		}
		rc.Close()
		out := make([]Result, len(d.Recipients))
		for i, r := range d.Recipients {
			out[i] = Result{Outcome: Delivered}
			if rcpts[r.Index] == 'l' {
				out[i] = Result{Outcome: Delayed, Reason: "try later"}
			}
		}
		return out
	})
	s, err := NewScheduler(q, SchedulerConfig{Deliverer: d, Logger: quiet, Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	before := fsys.snapshot()
	s.Start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got := fsys.snapshot().minus(before)
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	return got, q
}

// TestDeliverySyncs counts the syncs of delivering a message whose
// recipients are all done in one attempt: the move to active and the
// status record cost none, the removal is a journal tombstone (shared by
// the removals of a batch) or, without group commit, one directory
// fsync. A message that stays queued pays a durable status record (file
// and directory) and nothing for its move to deferred. strict is the
// earlier delivery path, kept for the benchmarks' baseline.
func TestDeliverySyncs(t *testing.T) {
	const n = 20
	t.Run("group commit", func(t *testing.T) {
		got, q := deliverCounted(t, Options{}, false, n, "d")
		if got.dir != 0 || got.file != 0 || got.journal < 1 || got.journal > n {
			t.Errorf("syncs of %d deliveries: %+v; want no directory or file sync and 1..%d journal syncs", n, got, n)
		}
		if left := names(t, q, Active); len(left) != 0 {
			t.Errorf("left in active: %v", left)
		}
		t.Logf("per delivered message: %.2f syncs (%+v)", float64(got.dir+got.file+got.journal)/n, got)
	})
	t.Run("no group commit", func(t *testing.T) {
		got, _ := deliverCounted(t, Options{NoGroupCommit: true}, false, n, "d")
		if want := (syncCount{dir: n}); got != want {
			t.Errorf("syncs of %d deliveries: %+v, want %+v (the directory of each removal)", n, got, want)
		}
	})
	t.Run("strict baseline", func(t *testing.T) {
		got, _ := deliverCounted(t, Options{NoGroupCommit: true}, true, n, "d")
		// Move to active: incoming and active; status record: the file
		// and active; removal: active.
		if want := (syncCount{dir: 4 * n, file: n}); got != want {
			t.Errorf("syncs of %d deliveries: %+v, want %+v", n, got, want)
		}
	})
	t.Run("partly deferred", func(t *testing.T) {
		got, q := deliverCounted(t, Options{NoGroupCommit: true}, false, n, "dl")
		// One durable record per batch (two batches: two destinations),
		// nothing for the move to deferred.
		if want := (syncCount{dir: 2 * n, file: 2 * n}); got != want {
			t.Errorf("syncs of %d partly deferred messages: %+v, want %+v", n, got, want)
		}
		ids := names(t, q, Deferred)
		if len(ids) != n {
			t.Fatalf("deferred %d messages, want %d", len(ids), n)
		}
		m, err := q.Read(ids[0])
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if m.Status[0].Outcome != Delivered || m.Status[1].Outcome != Delayed {
			t.Errorf("recorded statuses %v, %v; want delivered, delayed", m.Status[0].Outcome, m.Status[1].Outcome)
		}
	})
}

// TestUnrecordedStatusesOnFailedRemove: a pass that delivered every
// recipient records nothing before the removal; when the removal fails
// (here the unlink), the statuses are recorded after all, so the message
// left in the queue is not delivered again.
func TestUnrecordedStatusesOnFailedRemove(t *testing.T) {
	fsys := &removeFailFS{}
	q, err := open(t.TempDir(), Options{Logger: quiet, NoGroupCommit: true, Clock: NewFakeClock(t0)}, fsys)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	id := commit(t, q, testContent, testEnvelope(2))
	s, err := NewScheduler(q, SchedulerConfig{Deliverer: noop, Logger: quiet, Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fsys.fail.Store(true)
	s.Start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The removal failed: the statuses the pass did not record are
	// recorded instead, so the next start does not deliver again.
	m, err := q.Read(id)
	if err != nil {
		t.Fatalf("after a failed removal: %v", err)
	}
	defer m.Close()
	if len(m.Pending()) != 0 {
		t.Errorf("pending after a failed removal: %v, want none (statuses recorded)", m.Pending())
	}
}

type removeFailFS struct {
	osFS
	fail atomic.Bool
}

func (r *removeFailFS) Remove(name string) error {
	if r.fail.Load() && !strings.HasPrefix(filepath.Base(name), tempPrefix) {
		return &os.PathError{Op: "unlink", Path: name, Err: os.ErrPermission}
	}
	return r.osFS.Remove(name)
}

// TestSpareReuse: the scheduler's removal keeps the file as a spare, and
// the next Create overwrites it: the new message reads back whole with
// nothing of the old, larger one after it; a message with a reader open
// is not recycled; Close deletes the spares and Open finds nothing to
// report.
func TestSpareReuse(t *testing.T) {
	if !canRecycle {
		t.Skip("no hard links here")
	}
	dir := t.TempDir()
	q := openTest(t, dir, Options{NoGroupCommit: true})
	ctx := context.Background()
	big := "Subject: big\r\n\r\n" + strings.Repeat("old old old\r\n", 2000)
	id := commit(t, q, big, testEnvelope(1))
	fi, err := os.Stat(q.path(Incoming, id))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.remove(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if n := len(q.spares.names); n != 1 {
		t.Fatalf("%d spares after a removal, want 1", n)
	}
	id2 := commit(t, q, testContent, testEnvelope(2))
	fi2, err := os.Stat(q.path(Incoming, id2))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi, fi2) {
		t.Error("the new message did not reuse the removed one's file")
	}
	if id2 == id {
		t.Fatal("a reused file gave the same queue ID")
	}
	m, err := q.Read(id2)
	if err != nil {
		t.Fatalf("reading the message in a reused file: %v", err)
	}
	if got := readAll(t, m.Content()); got != testContent || len(m.Status) != 2 || len(m.Pending()) != 2 {
		t.Errorf("reused file: content %q, %d statuses, pending %v", got, len(m.Status), m.Pending())
	}
	// A reader is open: the removal must not recycle the file.
	if err := q.remove(ctx, id2, true); err != nil {
		t.Fatal(err)
	}
	if n := len(q.spares.names); n != 0 {
		t.Errorf("%d spares: a file with an open reader was recycled", n)
	}
	if got := readAll(t, m.Content()); got != testContent {
		t.Errorf("open reader sees %q after the removal", got)
	}
	m.Close()
	id3 := commit(t, q, testContent, testEnvelope(1))
	if err := q.remove(ctx, id3, true); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(q.path(Incoming, ""))
	for _, e := range ents {
		t.Errorf("left in incoming after Close: %s", e.Name())
	}
	q2 := openTest(t, dir, Options{})
	if r := q2.Recovery(); len(r.Removed)+len(r.Requeued)+len(r.Corrupt) != 0 {
		t.Errorf("recovery after a clean Close: %+v", r)
	}
}

package queue

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func scanJournalFile(path string) (map[string]journalEntry, []string, map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	r := bytes.NewReader(data)
	return scanJournal(r, int64(len(data)), journalEpoch(r, int64(len(data))))
}

// crash stops q as a power cut would: no checkpoint, nothing flushed
// beyond what was already synced; the lock is released.
func crash(q *Queue) {
	q.closeMu.Lock()
	q.closed = true
	q.closeMu.Unlock()
	close(q.commitCh)
	q.wg.Wait()
	q.closeFiles()
}

// What a power cut can do to files that were never fsynced (their data,
// their new names) is undone from the journal; what was removed stays
// removed; statuses recorded after the commit survive.
func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	ctx := context.Background()
	var ids []string
	for range 6 {
		ids = append(ids, commit(t, q, testContent, testEnvelope(2)))
	}
	lost, torn, empty, marked, removed, moved := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	if err := q.MarkRecipients(ctx, marked, []Status{{Rcpt: 1, Outcome: Delivered}}); err != nil {
		t.Fatal(err)
	}
	removedData, _ := os.ReadFile(filepath.Join(dir, "incoming", removed))
	if err := q.Remove(ctx, removed); err != nil {
		t.Fatal(err)
	}
	if err := q.Defer(ctx, moved, q.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.FileSyncs != 1 || st.JournalSyncs < 7 {
		t.Errorf("stats %+v: want the commits journaled, one file fsync (the status record)", st)
	}
	crash(q)

	in := func(s State, id string) string { return filepath.Join(dir, string(s), id) }
	os.Remove(in(Incoming, lost))                           // the new name never reached the disk
	os.Truncate(in(Incoming, torn), headerSize+10)          // part of the data did
	os.Truncate(in(Incoming, empty), 0)                     // none did
	os.Truncate(in(Deferred, moved), 20)                    // moved, data lost
	os.WriteFile(in(Incoming, removed), removedData, 0o600) // the unlink was lost

	q = openTest(t, dir, Options{})
	r := q.Recovery()
	got := slices.Clone(r.Replayed)
	slices.Sort(got)
	want := []string{lost, torn, empty, moved}
	slices.Sort(want)
	if !slices.Equal(got, want) || len(r.Corrupt) != 0 {
		t.Errorf("replayed %v corrupt %v, want replayed %v", r.Replayed, r.Corrupt, want)
	}
	for _, id := range []string{lost, torn, empty, marked, moved} {
		m, err := q.Read(id)
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		if got := readAll(t, m.Content()); got != testContent {
			t.Errorf("%s: content %q", id, got)
		}
		if id == moved && m.State != Deferred {
			t.Errorf("moved message replayed into %s", m.State)
		}
		if id == marked && m.Status[1].Outcome != Delivered {
			t.Errorf("status lost: %+v", m.Status)
		}
		m.Close()
	}
	if _, err := q.Read(removed); err == nil {
		t.Error("a removed message came back")
	}
	if msgs, _, dead, err := scanJournalFile(filepath.Join(dir, journalName)); err != nil || len(msgs)+len(dead) != 0 {
		t.Errorf("journal after replay: %d messages, %d tombstones, %v", len(msgs), len(dead), err)
	}
}

// A checkpoint makes the journaled files durable on their own and empties
// the journal; Close checkpoints too.
func TestJournalCheckpoint(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	q.jn.limit = 4 << 10
	for range 20 {
		commit(t, q, testContent, testEnvelope(1))
	}
	st := q.Stats()
	if st.Checkpoints == 0 || st.FileSyncs == 0 {
		t.Errorf("no checkpoint after 20 commits with a 4 KB limit: %+v", st)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if msgs, _, dead, err := scanJournalFile(filepath.Join(dir, journalName)); err != nil || len(msgs)+len(dead) != 0 {
		t.Errorf("journal after Close: %d messages, %d tombstones, %v", len(msgs), len(dead), err)
	}
	// After a clean Close nothing needs replaying.
	q = openTest(t, dir, Options{})
	if r := q.Recovery(); len(r.Replayed)+len(r.Corrupt)+len(r.Removed) != 0 {
		t.Errorf("recovery after Close: %+v", r)
	}
	if l, _ := q.List(Incoming); len(l) != 20 {
		t.Errorf("%d messages, want 20", len(l))
	}
}

// A torn batch at the end of the journal (a crash during its write) is
// ignored: it was never acknowledged.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	id := commit(t, q, testContent, testEnvelope(1))
	crash(q)
	jp := filepath.Join(dir, journalName)
	// The torn record right after the last good one: find the end.
	data, _ := os.ReadFile(jp)
	epoch := journalEpoch(bytes.NewReader(data), int64(len(data)))
	end := int64(journalHeader)
	for {
		_, _, next, err := readRecord(bytes.NewReader(data), end, int64(len(data)))
		if err != nil {
			break
		}
		end = next
	}
	torn := appendJournalRecord(nil, epoch, kindJournalMessage, journalMessage("0000000000z1", Incoming, []byte("xx")))
	copy(data[end:], torn[:len(torn)-3])
	os.WriteFile(jp, data, 0o600)
	os.Remove(filepath.Join(dir, "incoming", id))
	q = openTest(t, dir, Options{})
	if r := q.Recovery(); !slices.Equal(r.Replayed, []string{id}) {
		t.Errorf("replayed %v, want [%s]", r.Replayed, id)
	}
}

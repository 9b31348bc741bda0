package queue

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Group commit journals small messages while most are removed soon after
// their commit, and commits them directly (file and directory fsync, no
// journal copy) while most stay queued; either way a commit survives a
// crash that loses everything not fsynced.
func TestCommitModeFollowsRemovals(t *testing.T) {
	defer func(w int) { modeWindow = w }(modeWindow)
	modeWindow = 64
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	ctx := context.Background()
	open := q.Stats()
	// Removed at once: every commit stays in the journal, no file fsync.
	for range modeWindow + 10 {
		id := commit(t, q, testContent, testEnvelope(1))
		if err := q.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if st := q.Stats(); st.FileSyncs != open.FileSyncs || st.DirSyncs != open.DirSyncs {
		t.Fatalf("commit+remove: %d file and %d directory fsyncs, want none (journal only)", st.FileSyncs-open.FileSyncs, st.DirSyncs-open.DirSyncs)
	}
	// A lone committer whose messages stay: still the journal.
	before := q.Stats()
	var kept []string
	for range 2 * modeWindow {
		kept = append(kept, commit(t, q, testContent, testEnvelope(1)))
	}
	if st := q.Stats(); st.FileSyncs != before.FileSyncs {
		t.Fatalf("one committer, commit only: %d file fsyncs, want the journal", st.FileSyncs-before.FileSyncs)
	}
	// Eight at once whose messages stay: after a window, the direct path.
	before = q.Stats()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2 * modeWindow / 8 {
				id := commit(t, q, testContent, testEnvelope(1))
				mu.Lock()
				kept = append(kept, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	st := q.Stats()
	direct := st.FileSyncs - before.FileSyncs
	if direct < int64(modeWindow/2) || st.DirSyncs-before.DirSyncs < int64(modeWindow/2) {
		t.Fatalf("8 committers, commit only: %d file and %d directory fsyncs for %d commits, want the direct path for the second window",
			direct, st.DirSyncs-before.DirSyncs, 2*modeWindow)
	}
	// The last message was committed directly: its own fsyncs make it
	// durable without a journal copy; after a crash every message is
	// there, whole.
	last := kept[len(kept)-1]
	crash(q)
	if msgs, _, _, err := scanJournalFile(filepath.Join(dir, journalName)); err != nil || msgs[last].file != nil {
		t.Fatalf("the directly committed %s is in the journal (%v)", last, err)
	}
	q = openTest(t, dir, Options{})
	for _, id := range kept {
		m, err := q.Read(id)
		if err != nil {
			t.Fatalf("%s after the crash: %v", id, err)
		}
		if got := readAll(t, m.Content()); got != testContent {
			t.Fatalf("%s: content %q", id, got)
		}
		m.Close()
	}
	if r := q.Recovery(); len(r.Corrupt) != 0 {
		t.Errorf("corrupt after the crash: %v", r.Corrupt)
	}
	// Removals catching up bring the journal back.
	for _, id := range kept {
		if err := q.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 * modeWindow {
		id := commit(t, q, testContent, testEnvelope(1))
		if err := q.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	before = q.Stats()
	for range 10 {
		id := commit(t, q, testContent, testEnvelope(1))
		if err := q.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if st := q.Stats(); st.FileSyncs != before.FileSyncs {
		t.Errorf("removals caught up, but commits still fsync their files: %+v -> %+v", before, st)
	}
	if _, err := os.Stat(filepath.Join(dir, journalName)); err != nil {
		t.Fatal(err)
	}
}

package mailbox

import (
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Deliveries into one Maildir share the fsync of its new/ directory the way
// group commit shares a journal sync. A delivery that has linked its file
// into new/ needs an fsync of new/ that began after the link; fsync of a
// directory makes every entry made before it durable, so one fsync serves
// all the deliveries that linked before it started.
//
// Per directory there is at most one round running (cur, possibly already
// in fsync) and at most one round pending (next, not started). A caller
// arriving while nothing runs starts a round itself. A caller arriving
// while a round runs joins the pending round (creating it, and then
// leading it, if there is none): the pending round starts only after the
// running one has finished, so after every joiner's link. The leader of
// the pending round waits for the running one and then fsyncs; every
// waiter of a round gets that round's error. No goroutines are started: the
// fsync runs in a delivering goroutine, and an entry leaves the registry
// when its last caller is done.

// coalesceDirSync turns the sharing on (the default). Off, every caller
// fsyncs the directory itself (the benchmark's baseline).
var coalesceDirSync atomic.Bool

func init() { coalesceDirSync.Store(true) }

// syncDirFunc fsyncs a directory; tests replace it to count, order and fail
// fsyncs.
var syncDirFunc = syncDir

// syncRound is one fsync of a directory and the callers it serves.
type syncRound struct {
	done    chan struct{} // closed when err is set
	err     error
	waiters int // callers served by this round (tests look at it)
}

// dirSyncer is the state of one directory.
type dirSyncer struct {
	refs int        // callers using this entry; guarded by dirSyncers.mu
	mu   sync.Mutex // guards cur and next
	cur  *syncRound // running round, nil when none runs
	next *syncRound // pending round (cur != nil), not started
}

var dirSyncers struct {
	mu sync.Mutex
	m  map[string]*dirSyncer
}

// syncDirShared returns after an fsync of dir that began after the call
// (so after every change the caller made to dir before calling), with that
// fsync's error.
func syncDirShared(dir string) error {
	if !coalesceDirSync.Load() {
		return syncDirFunc(dir)
	}
	dir = filepath.Clean(dir)
	s := acquireDirSyncer(dir)
	defer releaseDirSyncer(dir, s)

	s.mu.Lock()
	if s.cur == nil {
		r := &syncRound{done: make(chan struct{}), waiters: 1}
		s.cur = r
		s.mu.Unlock()
		return s.run(dir, r)
	}
	if r := s.next; r != nil {
		r.waiters++
		s.mu.Unlock()
		<-r.done
		return r.err
	}
	r := &syncRound{done: make(chan struct{}), waiters: 1}
	s.next = r
	running := s.cur
	s.mu.Unlock()
	<-running.done // run made r the running round before closing this
	return s.run(dir, r)
}

// run fsyncs dir for round r (which is s.cur), publishes the result and
// hands over to the pending round, whose leader is waiting for r.done.
func (s *dirSyncer) run(dir string, r *syncRound) error {
	err := syncDirFunc(dir)
	s.mu.Lock()
	r.err = err
	s.cur = s.next // nil or the pending round; its fsync starts after this
	s.next = nil
	close(r.done)
	s.mu.Unlock()
	return err
}

func acquireDirSyncer(dir string) *dirSyncer {
	dirSyncers.mu.Lock()
	defer dirSyncers.mu.Unlock()
	s := dirSyncers.m[dir]
	if s == nil {
		if dirSyncers.m == nil {
			dirSyncers.m = make(map[string]*dirSyncer)
		}
		s = &dirSyncer{}
		dirSyncers.m[dir] = s
	}
	s.refs++
	return s
}

func releaseDirSyncer(dir string, s *dirSyncer) {
	dirSyncers.mu.Lock()
	defer dirSyncers.mu.Unlock()
	s.refs--
	if s.refs == 0 {
		delete(dirSyncers.m, dir)
	}
}

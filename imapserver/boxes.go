package imapserver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postkit-mail/postkit/mailbox"
)

// A sharedBox is one mailbox open in this process, shared by every
// session that has it selected (the same Maildir, the same read-only
// mode and the same owner for new files): one *mailbox.Maildir and its
// message list, one subscription to the change hub, whatever the number
// of sessions. A session keeps only its own view (sequence numbers,
// the flags it has reported) and a wake-up channel.
//
// Every hub event for the mailbox is handled once: the box syncs the
// Maildir, raises gen and wakes each session, which then compares its
// view with the box's messages.
//
// While every session of the box is in IDLE the box hibernates: it lets
// go of the Maildir (its message list) and keeps only the subscription;
// an event, a session leaving IDLE or a new session opens it again.
type sharedBox struct {
	key boxKey
	// hibernate is Options.IdleHibernate (negative: never).
	hibernateAfter time.Duration
	st             *mailbox.Store // to open the Maildir again after hibernation
	name           string
	md             *mailbox.Maildir // guarded by mu; nil while hibernating
	sub            *mailbox.Subscription
	err            error
	// ready is closed once md (or err) is set by the session that
	// opened the box.
	ready chan struct{}

	refs int // guarded by Server.boxMu

	// syncMu serialises sync-and-announce, so that one event wakes the
	// sessions once.
	syncMu sync.Mutex
	gen    atomic.Uint64
	// barrier lets poll wait until run has handled every event it
	// received; done is closed when run ends.
	barrier chan chan struct{}
	done    chan struct{}

	mu        sync.Mutex
	idle      int // sessions in IDLE
	waiters   map[chan struct{}]struct{}
	recentMax uint32 // highest UID whose \Recent a session took
	recentVal uint32 // the UIDVALIDITY recentMax belongs to
}

type boxKey struct {
	path     string
	readOnly bool
	uid, gid int
}

// openBox returns the shared box of the store's folder name, opening the
// Maildir if no session has it open. The caller must releaseBox it.
func (s *Server) openBox(ctx context.Context, st *mailbox.Store, name string, readOnly bool, uid, gid int) (*sharedBox, error) {
	path, err := st.FolderPath(name)
	if err != nil {
		return nil, err
	}
	k := boxKey{path: mailbox.CleanPath(path), readOnly: readOnly, uid: uid, gid: gid}
	s.boxMu.Lock()
	b := s.boxes[k]
	opener := b == nil
	if opener {
		b = &sharedBox{key: k, hibernateAfter: s.opts.IdleHibernate, st: st, name: name, ready: make(chan struct{}), waiters: map[chan struct{}]struct{}{},
			barrier: make(chan chan struct{}), done: make(chan struct{})}
		s.boxes[k] = b
	}
	b.refs++
	s.boxMu.Unlock()
	if opener {
		// Subscribed before the Maildir is read, so no change falls
		// between the two; from then on the hub keeps the box current.
		b.sub = s.hub.Subscribe(k.path)
		b.md, b.err = st.OpenFolder(ctx, name, readOnly)
		if b.err == nil {
			go b.run()
		} else {
			close(b.done)
		}
		close(b.ready)
	} else {
		select {
		case <-b.ready:
		case <-ctx.Done():
			s.releaseBox(b)
			return nil, ctx.Err()
		}
	}
	if b.err != nil {
		err := b.err
		s.releaseBox(b)
		return nil, err
	}
	return b, nil
}

// releaseBox drops one reference; the last closes the subscription (and
// so ends run).
func (s *Server) releaseBox(b *sharedBox) {
	s.boxMu.Lock()
	defer s.boxMu.Unlock()
	if b.refs--; b.refs > 0 {
		return
	}
	if s.boxes[b.key] == b {
		delete(s.boxes, b.key)
	}
	if b.sub != nil {
		b.sub.Close()
	}
}

// run handles the hub's events for the box until the subscription ends.
func (b *sharedBox) run() {
	defer close(b.done)
	for {
		select {
		case _, ok := <-b.sub.C:
			if !ok {
				return
			}
			b.sync(true)
		case c := <-b.barrier:
			close(c)
		}
	}
}

// poll handles the events announced so far: a session calls it after
// each command, so that a change announced before the command ended
// shows in its answer. An event run has received is handled once run
// takes the barrier; one still in the channel is handled here.
func (b *sharedBox) poll() {
	c := make(chan struct{})
	select {
	case b.barrier <- c:
		<-c
	case <-b.done:
		return
	}
	if len(b.sub.C) > 0 {
		b.sync(true)
	}
}

// sync takes the waiting events, syncs the Maildir and, when an event
// came, the caller insists (announce) or the Maildir changed, raises gen
// and wakes the sessions.
func (b *sharedBox) sync(announce bool) error {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	for drained := false; !drained; {
		select {
		case _, ok := <-b.sub.C:
			if !ok {
				drained = true
			} else {
				announce = true
			}
		default:
			drained = true
		}
	}
	md, err := b.current()
	if err != nil {
		return err
	}
	ch, err := md.Sync(context.Background())
	if err != nil {
		return err
	}
	if announce || len(ch.New) > 0 || len(ch.Expunged) > 0 || len(ch.Flags) > 0 {
		b.gen.Add(1)
		b.mu.Lock()
		for w := range b.waiters {
			select {
			case w <- struct{}{}:
			default:
			}
		}
		b.mu.Unlock()
	}
	return nil
}

// current returns the Maildir, opening it again if the box hibernates.
func (b *sharedBox) current() (*mailbox.Maildir, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.currentLocked()
}

func (b *sharedBox) currentLocked() (*mailbox.Maildir, error) {
	if b.md == nil {
		md, err := b.st.OpenFolder(context.Background(), b.name, b.key.readOnly)
		if err != nil {
			return nil, err
		}
		b.md = md
		if b.idle > 0 && b.idle == len(b.waiters) {
			// Woken while all idle: sleep again once the sessions have
			// compared their views.
			b.hibernateLater()
		}
	}
	return b.md, nil
}

// hibernateLater lets go of the Maildir after hibernateAfter if every
// session is in IDLE then.
func (b *sharedBox) hibernateLater() {
	if b.hibernateAfter >= 0 {
		time.AfterFunc(b.hibernateAfter, b.hibernate)
	}
}

// hibernate lets go of the Maildir if every session is in IDLE.
func (b *sharedBox) hibernate() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.idle > 0 && b.idle == len(b.waiters) {
		b.md = nil
	}
}

// attach adds a session (its wake-up channel) and returns the Maildir.
func (b *sharedBox) attach(w chan struct{}) (*mailbox.Maildir, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	md, err := b.currentLocked()
	if err != nil {
		return nil, err
	}
	b.waiters[w] = struct{}{}
	return md, nil
}

// detach removes a session (idle: it was in IDLE).
func (b *sharedBox) detach(w chan struct{}, idle bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.waiters, w)
	if idle {
		b.idle--
	}
	if b.idle > 0 && b.idle == len(b.waiters) {
		b.hibernateLater()
	}
}

// enterIdle counts a session in IDLE; when all are, the box hibernates
// after hibernateAfter (unless one leaves IDLE or a session joins). The
// session must drop its reference to the Maildir.
func (b *sharedBox) enterIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.idle++
	if b.idle == len(b.waiters) {
		b.hibernateLater()
	}
}

// leaveIdle counts a session out of IDLE and returns the Maildir.
func (b *sharedBox) leaveIdle() (*mailbox.Maildir, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.idle--
	return b.currentLocked()
}

// takeRecent reports whether the session adding message m to its view
// gets its \Recent flag: only the first session to see a message the box
// moved from new/ does (RFC 3501 2.3.2).
func (b *sharedBox) takeRecent(m mailbox.Message, validity uint32) bool {
	if !m.Recent {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v := validity; v != b.recentVal {
		b.recentVal, b.recentMax = v, 0
	}
	if m.UID <= b.recentMax {
		return false
	}
	b.recentMax = m.UID
	return true
}

package mailbox

import (
	"path/filepath"
	"sync"
	"time"
)

// EventKind says what changed in a mailbox.
type EventKind uint8

const (
	// EventNew: messages were delivered, appended, copied or moved in.
	EventNew EventKind = iota + 1
	// EventExpunge: messages were removed.
	EventExpunge
	// EventFlags: messages' flags changed (or, from the file-system
	// watcher, files in cur/ were renamed).
	EventFlags
)

func (k EventKind) String() string {
	switch k {
	case EventNew:
		return "new"
	case EventExpunge:
		return "expunge"
	case EventFlags:
		return "flags"
	}
	return "unknown"
}

// Event is one change notice. Events are hints: a reader that gets one
// calls (*Maildir).Sync (or rescans the mbox) to learn exactly what changed.
// When a subscriber's buffer is full further events are dropped, which loses
// nothing since a pending event already asks the reader to resync.
type Event struct {
	Kind EventKind
	// Mailbox is the absolute, cleaned path of the Maildir directory or
	// mbox file, as Subscribe normalises it.
	Mailbox string
	// UIDs are the messages concerned, when the change was made through
	// a *Maildir of this process (Append, Copy, SetFlags, Expunge, Sync).
	// Deliveries and changes seen by the file-system watcher have none.
	UIDs []uint32
	// External is set for events from the file-system watcher: a change
	// by another process (or by this one: the watcher cannot tell).
	External bool
}

// WatchMode selects how a Hub notices changes made by other processes.
type WatchMode uint8

const (
	// WatchAuto uses inotify where available (Linux) and polling otherwise.
	WatchAuto WatchMode = iota
	// WatchInotify uses inotify only (an error on systems without it makes
	// the hub fall back to in-process events only).
	WatchInotify
	// WatchPoll compares directory and file modification times and sizes
	// every PollInterval.
	WatchPoll
	// WatchNone: only in-process notifications.
	WatchNone
)

// HubOptions configure a Hub. The zero value is DefaultHub's setting.
type HubOptions struct {
	Watch WatchMode
	// PollInterval for WatchPoll (and the WatchAuto fallback); 0 = 1s.
	PollInterval time.Duration
	// Buffer is each subscription's channel capacity; 0 = 64.
	Buffer int
}

// Hub delivers change events per mailbox path to subscribers. Deliveries
// (DeliverMaildir, DeliverMbox) and the reading-side operations of this
// process notify it directly; changes made by other processes are picked
// up by a file-system watcher started for each subscribed path: inotify
// on Linux (new/ and cur/ of a Maildir, or the mbox file), polling of
// modification times elsewhere or when inotify is unavailable.
//
// A Hub is safe for concurrent use. The zero Hub is not usable; call NewHub.
type Hub struct {
	opts HubOptions

	mu      sync.Mutex
	subs    map[string]map[*Subscription]struct{}
	watcher watcher // nil until the first subscription; stays nil with WatchNone
	// fallback polls the paths the watcher could not take (inotify watch
	// limit reached).
	fallback *poller
	wfailed  bool
	closed   bool
}

// DefaultHub is the hub used when an options struct leaves Hub nil.
var DefaultHub = NewHub(HubOptions{})

// NewHub returns a hub with the given options.
func NewHub(opts HubOptions) *Hub {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 64
	}
	return &Hub{opts: opts, subs: map[string]map[*Subscription]struct{}{}}
}

// Subscription receives the events of one mailbox on C until Close.
type Subscription struct {
	C    <-chan Event
	c    chan Event
	hub  *Hub
	path string
	once sync.Once
}

// CleanPath is the key the hub files a mailbox under: the absolute, cleaned
// path (no symlink resolution).
func CleanPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// Subscribe starts delivering the events of the mailbox at path (a Maildir
// directory or an mbox file) and, for the first subscriber of that path,
// starts watching it for changes made by other processes. A path that does
// not exist yet gets in-process events only.
func (h *Hub) Subscribe(path string) *Subscription {
	p := CleanPath(path)
	c := make(chan Event, h.opts.Buffer)
	s := &Subscription{C: c, c: c, hub: h, path: p}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(c)
		return s
	}
	m := h.subs[p]
	if m == nil {
		m = map[*Subscription]struct{}{}
		h.subs[p] = m
		h.startWatchLocked(p)
	}
	m[s] = struct{}{}
	return s
}

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		h := s.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		if m := h.subs[s.path]; m != nil {
			if _, ok := m[s]; ok {
				delete(m, s)
				close(s.c)
			}
			if len(m) == 0 {
				delete(h.subs, s.path)
				if h.watcher != nil {
					h.watcher.remove(s.path)
				}
				if h.fallback != nil {
					h.fallback.remove(s.path)
				}
			}
		}
	})
}

// Notify sends ev to the subscribers of ev.Mailbox (normalised with
// CleanPath). It never blocks.
func (h *Hub) Notify(ev Event) {
	if h == nil {
		return
	}
	ev.Mailbox = CleanPath(ev.Mailbox)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[ev.Mailbox] {
		select {
		case s.c <- ev:
		default: // a pending event already tells the reader to resync
		}
	}
}

// WatchMethod reports how other processes' changes are detected:
// "inotify", "poll", "none", or "" when nothing is subscribed yet.
func (h *Hub) WatchMethod() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.opts.Watch == WatchNone || h.wfailed {
		return "none"
	}
	if h.watcher == nil {
		return ""
	}
	return h.watcher.method()
}

// Close stops the watcher and closes every subscription.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	for p, m := range h.subs {
		for s := range m {
			close(s.c)
		}
		delete(h.subs, p)
	}
	w, fb := h.watcher, h.fallback
	h.watcher, h.fallback = nil, nil
	h.mu.Unlock()
	// Outside the lock: the watchers' goroutines may be waiting in Notify.
	if w != nil {
		w.close()
	}
	if fb != nil {
		fb.close()
	}
	return nil
}

// watcher is a cross-process change detector.
type watcher interface {
	add(path string) error
	remove(path string)
	close()
	method() string
}

func (h *Hub) startWatchLocked(p string) {
	if h.opts.Watch == WatchNone || h.wfailed {
		return
	}
	if h.watcher == nil {
		emit := h.externalEmit
		var w watcher
		var err error
		switch h.opts.Watch {
		case WatchPoll:
			w = newPoller(h.opts.PollInterval, emit)
		case WatchInotify:
			w, err = newInotify(emit)
		default:
			w, err = newInotify(emit)
			if err != nil {
				w, err = newPoller(h.opts.PollInterval, emit), nil
			}
		}
		if err != nil {
			h.wfailed = true
			return
		}
		h.watcher = w
	}
	if err := h.watcher.add(p); err != nil {
		if h.fallback == nil {
			h.fallback = newPoller(h.opts.PollInterval, h.externalEmit)
		}
		h.fallback.add(p)
	}
}

// externalEmit announces a change the file-system watcher saw.
func (h *Hub) externalEmit(ev Event) {
	ev.External = true
	h.Notify(ev)
}

// hub returns h, or DefaultHub when h is nil.
func hubOr(h *Hub) *Hub {
	if h != nil {
		return h
	}
	return DefaultHub
}

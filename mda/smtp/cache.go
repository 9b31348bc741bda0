package smtp

import (
	"context"
	"sync"
	"time"

	"github.com/postkit-mail/postkit/smtpclient"
)

// session is an open, greeted (and maybe TLS-protected and authenticated)
// connection to one server.
type session struct {
	c       *smtpclient.Client
	t       target
	relay   string // host[addr]:port
	site    string // host[addr]
	key     string // cache key
	created time.Time
	// waitQuit: wait for the reply to QUIT (smtp_skip_quit_response = no).
	waitQuit bool
}

// sessionCache keeps idle sessions per destination for reuse (Postfix's
// scache: smtp_connection_cache_time_limit bounds the idle time,
// smtp_connection_reuse_time_limit a session's total age).
type sessionCache struct {
	mu     sync.Mutex
	idle   map[string][]*cached
	closed bool
}

// maxIdlePerKey bounds the idle sessions kept for one destination.
const maxIdlePerKey = 8

type cached struct {
	s     *session
	timer *time.Timer
}

// get takes an idle session for key, or returns nil.
func (sc *sessionCache) get(key string) *session {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	l := sc.idle[key]
	for len(l) > 0 {
		e := l[len(l)-1]
		l = l[:len(l)-1]
		sc.idle[key] = l
		if e.timer.Stop() {
			return e.s
		}
	}
	return nil
}

// put keeps s idle for up to idleLimit; a session that is too old, or a
// closed cache, gets QUIT instead.
func (sc *sessionCache) put(s *session, idleLimit, reuseLimit time.Duration, quitTimeout time.Duration) {
	if idleLimit <= 0 || time.Since(s.created) >= reuseLimit {
		quit(s, quitTimeout)
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.closed {
		go quit(s, quitTimeout)
		return
	}
	if sc.idle == nil {
		sc.idle = map[string][]*cached{}
	}
	if len(sc.idle[s.key]) >= maxIdlePerKey {
		go quit(s, quitTimeout)
		return
	}
	e := &cached{s: s}
	e.timer = time.AfterFunc(idleLimit, func() {
		sc.mu.Lock()
		l := sc.idle[s.key]
		for i, x := range l {
			if x == e {
				sc.idle[s.key] = append(l[:i:i], l[i+1:]...)
				break
			}
		}
		if len(sc.idle[s.key]) == 0 {
			delete(sc.idle, s.key)
		}
		sc.mu.Unlock()
		quit(s, quitTimeout)
	})
	sc.idle[s.key] = append(sc.idle[s.key], e)
}

// closeAll ends every idle session.
func (sc *sessionCache) closeAll(quitTimeout time.Duration) {
	sc.mu.Lock()
	var all []*session
	for _, l := range sc.idle {
		for _, e := range l {
			if e.timer.Stop() {
				all = append(all, e.s)
			}
		}
	}
	sc.idle = nil
	sc.closed = true
	sc.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			quit(s, quitTimeout)
		}()
	}
	wg.Wait()
}

// idleCount is the number of cached sessions (for tests and stats).
func (sc *sessionCache) idleCount() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	n := 0
	for _, l := range sc.idle {
		n += len(l)
	}
	return n
}

// quit ends a session politely: QUIT, and its reply awaited within
// quitTimeout only when the session asks for that (smtp_skip_quit_response
// = no).
func quit(s *session, quitTimeout time.Duration) {
	if s.c.Broken() != nil {
		s.c.Close()
		return
	}
	if !s.waitQuit {
		s.c.QuitNoWait()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
	defer cancel()
	s.c.Quit(ctx)
}

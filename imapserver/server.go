package imapserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
)

// Options configure a Server. Auth is required; every other zero value is
// a sensible default (Dovecot's where Dovecot has a setting).
type Options struct {
	// Auth checks passwords (LOGIN, AUTHENTICATE) and finds users'
	// home directories (its UserDB). Required.
	Auth *auth.Authenticator
	// MailRoot returns the Maildir++ root of an authenticated user. Nil
	// means: the user's Mail location when it is "maildir:PATH" (with
	// "~" and %u, %n, %d expanded; Dovecot's mail_location), otherwise
	// Home + "/Maildir".
	MailRoot func(ctx context.Context, u auth.User) (string, error)
	// TLSConfig enables STARTTLS and ServeTLS (implicit TLS, port 993).
	TLSConfig *tls.Config
	// AllowPlaintextAuth allows LOGIN and AUTHENTICATE on a connection
	// without TLS (Dovecot's disable_plaintext_auth = no). When false,
	// the server announces LOGINDISABLED before TLS and refuses both
	// (Dovecot also exempts loopback clients; this server does not).
	AllowPlaintextAuth bool
	// Hub is the mailbox change hub (deliveries by mda announce there);
	// nil means mailbox.DefaultHub.
	Hub *mailbox.Hub
	// Logger gets the Dovecot-style login and logout lines and errors;
	// nil means slog.Default().
	Logger *slog.Logger
	// Hostname for the unique names of appended messages ("" =
	// os.Hostname()).
	Hostname string

	// MaxConnections bounds all connections at once (0 = 1000).
	MaxConnections int
	// MaxIPConnections bounds the connections from one client address
	// (0 = 100; Dovecot's login processes have no per-IP limit, only
	// mail_max_userip_connections below).
	MaxIPConnections int
	// MaxUserIPConnections bounds one user's sessions from one address
	// (Dovecot's mail_max_userip_connections; 0 = 10).
	MaxUserIPConnections int
	// IdleTimeout bounds the wait for the next command, IDLE included
	// (0 = 30 minutes, RFC 3501 5.4's minimum; go-imap's own limit, 35
	// minutes, is never reached). go-imap keeps 30 s for a command
	// line and for a login before authentication.
	IdleTimeout time.Duration
	// AppendLimit is the largest message APPEND accepts, in bytes
	// (announced as APPENDLIMIT; 0 = 64 MiB).
	AppendLimit uint32
	// CacheEntries bounds the cache of message sizes and envelopes
	// shared by all sessions (0 = 200,000; negative = no cache).
	CacheEntries int
	// IdleHibernate is how long a selected mailbox whose sessions are
	// all in IDLE keeps its message list before letting go of it (it
	// reads the directory again at the next change or command; the
	// role of Dovecot's imap_hibernate_timeout). 0 means 30 seconds;
	// negative, never.
	IdleHibernate time.Duration
	// CreateSpecialFolders makes Drafts, Sent, Trash and Junk at login
	// when missing (default on; set DisableSpecialFolders to skip).
	DisableSpecialFolders bool
}

// Server is an IMAP4rev1/IMAP4rev2 server over postkit Maildir++ stores.
type Server struct {
	opts   Options
	log    *slog.Logger
	imap   *goimapserver.Server
	cache  *infoCache
	hub    *mailbox.Hub
	pid    int
	closed atomic.Bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     int
	perIP     map[netip.Addr]int
	perUserIP map[string]int
	idle      chan struct{} // closed and replaced when conns drops to 0

	boxMu sync.Mutex
	boxes map[boxKey]*sharedBox // the mailboxes selected now
}

// New returns a server; call Serve or ServeTLS to run it.
func New(opts Options) (*Server, error) {
	if opts.Auth == nil {
		return nil, errors.New("imapserver: Options.Auth is required")
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = 1000
	}
	if opts.MaxIPConnections <= 0 {
		opts.MaxIPConnections = 100
	}
	if opts.MaxUserIPConnections <= 0 {
		opts.MaxUserIPConnections = 10
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.AppendLimit == 0 {
		opts.AppendLimit = 64 << 20
	}
	if opts.IdleHibernate == 0 {
		opts.IdleHibernate = 30 * time.Second
	}
	if opts.CacheEntries == 0 {
		opts.CacheEntries = 200000
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		hub:       opts.Hub,
		pid:       os.Getpid(),
		listeners: map[net.Listener]struct{}{},
		perIP:     map[netip.Addr]int{},
		perUserIP: map[string]int{},
		boxes:     map[boxKey]*sharedBox{},
		idle:      make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.hub == nil {
		s.hub = mailbox.DefaultHub
	}
	s.cache = newInfoCache(opts.CacheEntries)
	s.imap = goimapserver.New(&goimapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:   {},
			imap.CapIMAP4rev2:   {},
			imap.CapLiteralPlus: {},
			imap.CapSpecialUse:  {},
			imap.CapUIDPlus:     {},
			imap.CapMove:        {},
			imap.CapNamespace:   {},
			imap.CapChildren:    {},
			imap.CapAppendLimit: {},
			imap.CapIdle:        {},
			imap.CapUnselect:    {},
			imap.CapESearch:     {},
			imap.CapSearchRes:   {},
		},
		Logger:       logAdapter{s.log},
		TLSConfig:    opts.TLSConfig,
		InsecureAuth: opts.AllowPlaintextAuth,
	})
	return s, nil
}

type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Printf(format string, args ...any) {
	a.l.Warn("imap: " + strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// Serve accepts plain connections on ln (port 143; STARTTLS when
// TLSConfig is set) until Close or Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(&limitListener{Listener: ln, s: s})
}

// ServeTLS accepts implicit-TLS connections on ln (port 993).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("imapserver: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(tls.NewListener(&limitListener{Listener: ln, s: s}, s.opts.TLSConfig))
}

func (s *Server) serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	err := s.imap.Serve(ln)
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	return err
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.closed.Store(true)
	s.closeListeners()
	return s.imap.Close()
}

// Shutdown stops accepting connections and waits for the open sessions
// to end (the clients log out) until ctx is done, then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closed.Store(true)
	s.closeListeners()
	for {
		s.mu.Lock()
		n, ch := s.conns, s.idle
		s.mu.Unlock()
		if n == 0 {
			return s.imap.Close()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			s.imap.Close()
			return ctx.Err()
		}
	}
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		ln.Close()
	}
}

// limitListener applies the connection limits before go-imap sees a
// connection, and wraps each in a conn that counts bytes and caps read
// deadlines at IdleTimeout. It sits below TLS, so go-imap still sees a
// *tls.Conn.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr()).Addr()
		s := l.s
		s.mu.Lock()
		var reason string
		switch {
		case s.conns >= s.opts.MaxConnections:
			reason = "Too many connections"
		case s.perIP[ip] >= s.opts.MaxIPConnections:
			reason = "Too many connections from your address"
		}
		if reason == "" {
			s.conns++
			s.perIP[ip]++
		}
		s.mu.Unlock()
		if reason != "" {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("* BYE [UNAVAILABLE] " + reason + "\r\n"))
			c.Close()
			s.log.Warn(fmt.Sprintf("imap-login: Disconnected: %s (rip=%s)", reason, ip))
			continue
		}
		return &countConn{Conn: c, s: s, ip: ip, start: time.Now()}, nil
	}
}

// countConn counts the bytes each way (Dovecot's in= and out=) and
// releases the connection's slot when closed.
type countConn struct {
	net.Conn
	s       *Server
	ip      netip.Addr
	start   time.Time
	in, out atomic.Int64
	once    sync.Once
	userKey atomic.Pointer[string]
	tail    [16]byte // last bytes read, to tell a LOGOUT from a drop
	tailMu  sync.Mutex
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	if n > 0 {
		c.tailMu.Lock()
		if n >= len(c.tail) {
			copy(c.tail[:], p[n-len(c.tail):n])
		} else {
			copy(c.tail[:], c.tail[n:])
			copy(c.tail[len(c.tail)-n:], p[:n])
		}
		c.tailMu.Unlock()
	}
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// SetReadDeadline caps go-imap's deadlines (35 minutes between commands)
// at IdleTimeout.
func (c *countConn) SetReadDeadline(t time.Time) error {
	if max := time.Now().Add(c.s.opts.IdleTimeout); t.IsZero() || t.After(max) {
		t = max
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *countConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *countConn) sawLogout() bool {
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return strings.Contains(strings.ToUpper(string(c.tail[:])), "LOGOUT")
}

func (c *countConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		s := c.s
		s.mu.Lock()
		s.conns--
		if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
			delete(s.perIP, c.ip)
		}
		if k := c.userKey.Load(); k != nil {
			if s.perUserIP[*k]--; s.perUserIP[*k] <= 0 {
				delete(s.perUserIP, *k)
			}
		}
		if s.conns == 0 {
			close(s.idle)
			s.idle = make(chan struct{})
		}
		s.mu.Unlock()
	})
	return err
}

// claimUser counts a logged-in session against MaxUserIPConnections.
func (s *Server) claimUser(c *countConn, user string) bool {
	if c == nil {
		return true
	}
	k := user + "\x00" + c.ip.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUserIP[k] >= s.opts.MaxUserIPConnections {
		return false
	}
	s.perUserIP[k]++
	c.userKey.Store(&k)
	return true
}

func addrOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func newSessionID() string {
	var b [9]byte
	rand.Read(b[:])
	return base64.RawStdEncoding.EncodeToString(b[:])
}

// baseConn finds our countConn under a possible *tls.Conn.
func baseConn(c net.Conn) (*countConn, bool) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, ok := c.(*countConn)
	return cc, ok
}

package pop3server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
)

// Defaults of the Server's limits.
const (
	// DefaultIdleTimeout is RFC 1939 3's minimum autologout timer (ten
	// minutes), which Dovecot uses too.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultMaxLineLength bounds a command line, CRLF excluded. RFC 2449
	// allows 255 octets; Dovecot accepts lines that fit its 2048-byte
	// input buffer, and so does postkit (SASL responses are longer than
	// 255 octets).
	DefaultMaxLineLength = 2046
	// DefaultMaxUserIPConnections is Dovecot's
	// mail_max_userip_connections.
	DefaultMaxUserIPConnections = 10
	// DefaultMaxIPConnections bounds the connections of one client
	// address (Postfix's smtpd_client_connection_count_limit value).
	DefaultMaxIPConnections = 50
	// DefaultMaxAuthFailures is how many failed logins a connection may
	// make before it is closed.
	DefaultMaxAuthFailures = 3
)

// Server is a POP3 server over postkit Maildirs. Set Auth, then call
// Serve (POP3, with STLS when TLSConfig is set) or ServeTLS (POP3S) for
// each listener. Other zero fields take the defaults documented on them.
type Server struct {
	// Auth checks passwords and runs the SASL mechanisms; it also finds
	// the user's mail (Auth.UserDB) unless MailboxPath says otherwise.
	// Required.
	Auth *auth.Authenticator
	// MailboxPath returns the Maildir of an authenticated user; nil means
	// DefaultMailboxPath. It must not let a user name choose a path
	// outside the mail root (DefaultMailboxPath checks the names it
	// substitutes).
	MailboxPath func(ctx context.Context, u auth.User) (string, error)
	// TLSConfig enables STLS on Serve's connections and is required by
	// ServeTLS.
	TLSConfig *tls.Config
	// AllowPlaintextAuth lets USER/PASS and the plaintext SASL mechanisms
	// (PLAIN, LOGIN) be used on a connection that is neither TLS nor from
	// the server's own address: Dovecot's disable_plaintext_auth = no.
	AllowPlaintextAuth bool
	// Greeting is the text after "+OK " in the greeting (Dovecot's
	// login_greeting); "" means "postkit ready.".
	Greeting string
	// Implementation, when set, is announced in CAPA (RFC 2449
	// IMPLEMENTATION) after login.
	Implementation string
	// IdleTimeout closes a connection that sends nothing for this long
	// (0: DefaultIdleTimeout). It also bounds each write.
	IdleTimeout time.Duration
	// MaxLineLength bounds a command line (0: DefaultMaxLineLength).
	MaxLineLength int
	// MaxUserIPConnections bounds the logged-in sessions of one user from
	// one address (0: DefaultMaxUserIPConnections, < 0: no limit).
	MaxUserIPConnections int
	// MaxIPConnections bounds the connections from one address
	// (0: DefaultMaxIPConnections, < 0: no limit).
	MaxIPConnections int
	// MaxAuthFailures closes a connection after this many failed logins
	// (0: DefaultMaxAuthFailures). Each failure is also delayed by
	// Auth.FailureDelay (auth_failure_delay, 2 s by default).
	MaxAuthFailures int
	// NoFlagUpdates is Dovecot's pop3_no_flag_updates: when false (the
	// default, as in Dovecot) messages sent whole by RETR get the Seen
	// flag ('S') when the session ends, unless they were deleted or the
	// client sent RSET.
	NoFlagUpdates bool
	// Hub is given to the Maildirs opened; nil means mailbox.DefaultHub.
	Hub *mailbox.Hub
	// Hostname is used in created Maildir file names ("" = os.Hostname()).
	Hostname string
	// Logger gets the login and logout lines; nil means slog.Default().
	Logger *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	perIP     map[netip.Addr]int
	perUserIP map[string]int
	closed    bool
	wg        sync.WaitGroup
	// ctx ends with Close, so that sessions waiting in an authentication
	// failure delay or a database query stop at once.
	ctx    context.Context
	cancel context.CancelFunc
}

// ErrServerClosed is returned by Serve and ServeTLS after Close.
var ErrServerClosed = errors.New("pop3server: server closed")

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Serve accepts POP3 connections on ln (STLS offered when TLSConfig is
// set) until Close. It always returns a non-nil error.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts POP3S connections (implicit TLS, RFC 8314) on ln.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.TLSConfig == nil {
		return errors.New("pop3server: ServeTLS needs TLSConfig")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	if s.Auth == nil {
		return errors.New("pop3server: Server.Auth is nil")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[net.Conn]struct{}{}
		s.perIP = map[netip.Addr]int{}
		s.perUserIP = map[string]int{}
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c, implicitTLS)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops the listeners, closes every connection (sessions end as if
// the client had dropped: no deletions) and waits for the sessions.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// acquireIP counts a connection from addr; false when over the limit.
func (s *Server) acquireIP(addr netip.Addr) bool {
	limit := orDefault(s.MaxIPConnections, DefaultMaxIPConnections)
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && s.perIP[addr] >= limit {
		return false
	}
	s.perIP[addr]++
	return true
}

func (s *Server) releaseIP(addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[addr]--; s.perIP[addr] <= 0 {
		delete(s.perIP, addr)
	}
}

func (s *Server) acquireUserIP(user string, addr netip.Addr) (release func(), ok bool) {
	limit := orDefault(s.MaxUserIPConnections, DefaultMaxUserIPConnections)
	key := user + "\x00" + addr.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && s.perUserIP[key] >= limit {
		return nil, false
	}
	s.perUserIP[key]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.perUserIP[key]--; s.perUserIP[key] <= 0 {
			delete(s.perUserIP, key)
		}
	}, true
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func newSessionID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawStdEncoding.EncodeToString(b[:])
}

// DefaultMailboxPath finds a user's Maildir from the userdb entry, as
// Dovecot reads mail_location: it is auth.MaildirPath (u.Mail
// "maildir:PATH" with ~, %u, %n, %d; else HOME/Maildir; unsafe user name
// parts and other mail formats refused). The IMAP server uses the same.
func DefaultMailboxPath(_ context.Context, u auth.User) (string, error) {
	return auth.MaildirPath(u)
}

// mpid is the "mail process id" of Dovecot's login lines: here, the
// server's own.
var mpid = os.Getpid()

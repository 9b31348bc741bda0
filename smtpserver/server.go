package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
)

// AuthBackend is what the server needs from a SASL user database: the
// mechanisms to offer (with or without TLS, for smtpd_sasl_security_options
// and smtpd_sasl_tls_security_options) and a fresh server side of one
// exchange.
type AuthBackend interface {
	Mechanisms(tls bool) []string
	NewMech(name string) (auth.ServerMech, error)
}

// TLSLevel is smtpd_tls_security_level.
type TLSLevel int

const (
	TLSNone    TLSLevel = iota // no STARTTLS
	TLSMay                     // STARTTLS offered
	TLSEncrypt                 // STARTTLS required before MAIL and AUTH
)

// BareNewline is smtpd_forbid_bare_newline.
type BareNewline int

const (
	// BareNewlineNo accepts a bare LF as a line end inside a line's text
	// (Debian's 3.7 default); it never ends DATA here, whatever the mode.
	BareNewlineNo BareNewline = iota
	// BareNewlineNormalize turns a bare LF into CRLF.
	BareNewlineNormalize
	// BareNewlineReject answers "Error: bare <LF> received" and
	// disconnects.
	BareNewlineReject
)

// Config configures a Server. Zero values take Postfix 3.7's defaults
// where noted.
type Config struct {
	Hostname string // myhostname
	// Banner is the expanded smtpd_banner text after "220 "; default
	// "Hostname ESMTP MailName".
	Banner   string
	MailName string // mail_name ("Postfix")
	Role     Role

	// Checker evaluates the restrictions; nil accepts everything (with
	// Postfix's protocol checks still applied) and is only sensible in
	// tests.
	Checker *restrictions.Checker
	// Handoff receives the accepted mail. Required.
	Handoff Handoff
	// Auth enables SMTP AUTH (smtpd_sasl_auth_enable) when not nil.
	Auth AuthBackend
	// BrokenSASLAuthClients adds the "AUTH=mechs" EHLO line.
	BrokenSASLAuthClients bool
	// SASLService is smtpd_sasl_service ("smtp"), the service name the
	// auth server is told (auth.ClientInfo).
	SASLService string

	// TLS is the server's TLS configuration; nil means no TLS. New works
	// on a clone of it (to learn which certificate each handshake used,
	// for Received:): replace certificates at run time through
	// GetCertificate, not by changing Certificates.
	TLS         *tls.Config
	TLSLevel    TLSLevel
	TLSAuthOnly bool // smtpd_tls_auth_only
	// TLSPolicy, when set, describes the handshakes for the restrictions
	// (client certificate verification against smtpd_tls_CAfile); it
	// comes with TLS from TLSConfigFrom.
	TLSPolicy *TLSPolicy
	// TLSFingerprintDigest is smtpd_tls_fingerprint_digest ("sha256").
	TLSFingerprintDigest string

	MessageSizeLimit int64         // message_size_limit (10240000); negative means no limit
	RecipientLimit   int           // smtpd_recipient_limit (1000)
	Timeout          time.Duration // smtpd_timeout (300s), for each read and each write
	// DataIdleTimeout bounds each read during DATA/BDAT; default Timeout.
	DataIdleTimeout time.Duration
	HardErrorLimit  int // smtpd_hard_error_limit (20)
	SoftErrorLimit  int // smtpd_soft_error_limit (10)
	// ErrorSleepTime is smtpd_error_sleep_time (1s; negative means none):
	// once the client has made SoftErrorLimit errors, every reply waits
	// this long first, the 421 of HardErrorLimit included; an error
	// counts from the reply after its own; a delivered message resets
	// the count (as Postfix 3.7.11 does, errorsleep_oracle_test.go).
	ErrorSleepTime time.Duration
	// Sleep waits for the error sleep; nil sleeps on a timer (tests
	// inject a fast one).
	Sleep func(ctx context.Context, d time.Duration) error

	ForbidBareNewline BareNewline // smtpd_forbid_bare_newline
	// ForbidUnauthPipelining is smtpd_forbid_unauth_pipelining: a client
	// that pipelines where RFC 2920 §3.1 does not allow it (or without
	// PIPELINING) gets "554 5.5.0 Error: SMTP protocol synchronization"
	// and is disconnected.
	ForbidUnauthPipelining bool
	// BareNewlineRejectCode is smtpd_forbid_bare_newline_reject_code
	// (550).
	BareNewlineRejectCode int
	// BareNewlineExclusions is smtpd_forbid_bare_newline_exclusions
	// ($mynetworks); nil excludes nobody.
	BareNewlineExclusions *maps.MatchList

	// FastFlushDomains is fast_flush_domains ($relay_domains): ETRN is
	// honoured only for these; nil honours none ("459 <x>: service
	// unavailable").
	FastFlushDomains *maps.MatchList
	// Flush, when set, is called for an accepted ETRN (Postfix's
	// flush(8) service); nil only answers "250 Queuing started".
	Flush func(ctx context.Context, site string) error

	// ForbiddenCommands is smtpd_forbidden_commands: verbs (matched as
	// the client wrote them) that show a client which does not speak
	// SMTP; it gets "221 2.7.0 Error: I can break rules, too. Goodbye."
	// and is disconnected, as is a client that sends a header line as a
	// command. nil means Postfix's default (CONNECT GET POST
	// regexp:{{/^[^A-Z]/ Bogus}}); an empty new(maps.MatchList) forbids
	// only header lines.
	ForbiddenCommands *maps.MatchList

	DisableVRFY         bool            // disable_vrfy_command
	XClientHosts        *maps.MatchList // smtpd_authorized_xclient_hosts
	XForwardHosts       *maps.MatchList // smtpd_authorized_xforward_hosts
	DiscardEHLOKeywords []string        // smtpd_discard_ehlo_keywords
	SMTPUTF8Enable      bool            // smtputf8_enable (yes)
	HeloRequired        bool            // smtpd_helo_required
	DelayReject         bool            // smtpd_delay_reject (mirrors the Checker's)
	LineLengthLimit     int             // line_length_limit (2048) for command lines
	// ClientNameLookup finds the client's names at connect, e.g.
	//	func(ctx context.Context, a netip.Addr) restrictions.ClientNames {
	//		return restrictions.LookupClient(ctx, res, a)
	//	}
	// nil leaves them "unknown" (smtpd_peername_lookup = no).
	ClientNameLookup     func(ctx context.Context, addr netip.Addr) restrictions.ClientNames
	Logger               *slog.Logger
	Now                  func() time.Time
	Location             *time.Location // for the Received: date; default time.Local
	ProtocolNameOverride string         // e.g. "LMTP"
	// TLSReceivedHeader is smtpd_tls_received_header: the TLS details
	// lines in Received: (protocol, cipher, key exchange, signatures, the
	// client certificate), as Postfix 3.7 writes them.
	TLSReceivedHeader bool
	// SASLAuthenticatedHeader is smtpd_sasl_authenticated_header: an
	// "(Authenticated sender: USER)" line in Received: after a login.
	SASLAuthenticatedHeader bool
	// InetProtocols is inet_protocols ("ipv4", "ipv6"; empty or "all":
	// both); XCLIENT and XFORWARD refuse addresses of other families.
	InetProtocols []string
}

// Server is an SMTP or LMTP server.
type Server struct {
	cfg Config
	log *slog.Logger
	// tlsConf is cfg.TLS as the handshakes use it (certRecorder);
	// handshakes maps the raw conn of a handshake in progress to its
	// session.
	tlsConf    *tls.Config
	handshakes sync.Map
	forbidden  *maps.MatchList

	mu       sync.Mutex
	lns      map[net.Listener]struct{}
	sessions map[*session]struct{}
	closing  atomic.Bool
	txnSeq   atomic.Int64
	started  time.Time
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

// instance returns a new transaction ID for policy servers (the
// "instance" attribute), unique within this process.
func (s *Server) instance() string {
	n := s.txnSeq.Add(1)
	return fmt.Sprintf("%x.%x.%x.%d", os.Getpid(), s.started.Unix(), s.started.Nanosecond()/1000, n)
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("smtpserver: server closed")

// New checks cfg and fills in Postfix's defaults.
func New(cfg Config) (*Server, error) {
	if cfg.Handoff == nil {
		return nil, errors.New("smtpserver: Config.Handoff is required")
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	forbidden := cfg.ForbiddenCommands
	if forbidden == nil {
		var err error
		forbidden, err = maps.NewMatchList(context.Background(), maps.MatchListConfig{
			Name: "smtpd_forbidden_commands", Kind: maps.StringMatch}, []string{defaultForbiddenCommands})
		if err != nil {
			return nil, fmt.Errorf("smtpserver: %w", err)
		}
	}
	if cfg.MailName == "" {
		cfg.MailName = "Postfix"
	}
	if cfg.SASLService == "" {
		cfg.SASLService = "smtp"
	}
	if cfg.Banner == "" {
		cfg.Banner = cfg.Hostname + " ESMTP " + cfg.MailName
		if cfg.Role == RoleLMTP {
			cfg.Banner = cfg.Hostname + " LMTP " + cfg.MailName
		}
	}
	if cfg.MessageSizeLimit == 0 {
		cfg.MessageSizeLimit = 10240000
	} else if cfg.MessageSizeLimit < 0 {
		cfg.MessageSizeLimit = 0
	}
	if cfg.RecipientLimit <= 0 {
		cfg.RecipientLimit = 1000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 300 * time.Second
	}
	if cfg.DataIdleTimeout <= 0 {
		cfg.DataIdleTimeout = cfg.Timeout
	}
	if cfg.HardErrorLimit <= 0 {
		cfg.HardErrorLimit = 20
	}
	if cfg.SoftErrorLimit <= 0 {
		cfg.SoftErrorLimit = 10
	}
	if cfg.ErrorSleepTime == 0 {
		cfg.ErrorSleepTime = time.Second
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	if cfg.BareNewlineRejectCode == 0 {
		cfg.BareNewlineRejectCode = 550
	}
	if cfg.LineLengthLimit <= 0 {
		cfg.LineLengthLimit = 2048
	}
	if cfg.TLSFingerprintDigest == "" {
		cfg.TLSFingerprintDigest = "sha256"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.TLS == nil {
		cfg.TLSLevel = TLSNone
	} else if cfg.TLSLevel == TLSNone && cfg.Role != RoleSubmissions {
		cfg.TLSLevel = TLSMay
	}
	if cfg.Checker != nil {
		rc := cfg.Checker.Config()
		cfg.DelayReject = rc.DelayReject
		cfg.HeloRequired = cfg.HeloRequired || rc.HeloRequired
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{cfg: cfg, log: lg, forbidden: forbidden, lns: map[net.Listener]struct{}{}, started: time.Now(),
		sessions: map[*session]struct{}{}, ctx: ctx, cancel: cancel}
	srv.tlsConf = srv.certRecorder(cfg.TLS)
	return srv, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Serve accepts connections on ln, one goroutine per connection, until
// Shutdown or Close. For RoleSubmissions the connections are wrapped in
// TLS here.
func (s *Server) Serve(ln net.Listener) error {
	if s.closing.Load() {
		return ErrServerClosed
	}
	s.mu.Lock()
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("smtpserver: accepting on %s: %w", ln.Addr(), err)
		}
		delay = 0
		// Connection limits, PROXY headers and the connect-stage 421s
		// belong to the Listener (NewListener) that ln may be; its
		// PeerConn carries the per-client rate limits into the session.
		s.ServeConn(c)
	}
}

// ServeConn runs one SMTP session on c in a new goroutine. It is how a
// listener layer (limits, PROXY protocol) hands over a connection it has
// accepted and vetted.
func (s *Server) ServeConn(c net.Conn) {
	if s.closing.Load() {
		c.Close()
		return
	}
	sess := newSession(s, c)
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
		}()
		sess.run()
	}()
}

// Shutdown stops accepting, asks idle sessions to end with
// "421 4.3.2 Service shutting down" and lets transactions in flight finish,
// until ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for ln := range s.lns {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.requestStop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops at once: listeners and connections are closed, messages in
// flight aborted.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.cancel()
	s.mu.Lock()
	for ln := range s.lns {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.conn.Close()
	}
	s.mu.Unlock()
	return nil
}

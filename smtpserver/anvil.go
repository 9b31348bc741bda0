package smtpserver

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
)

// Limits are the per-client limits Postfix's smtpd enforces through the
// anvil(8) server (postconf(5) smtpd_client_*_limit). A zero limit is off,
// as in Postfix. The zero Limits enforces nothing.
type Limits struct {
	// Hostname is $myhostname, named in the 421 replies.
	Hostname string
	// ConnectionCountLimit is smtpd_client_connection_count_limit: the
	// number of simultaneous connections one client may have (50).
	ConnectionCountLimit int
	// ConnectionRateLimit is smtpd_client_connection_rate_limit:
	// connection attempts per TimeUnit (0, off).
	ConnectionRateLimit int
	// MessageRateLimit is smtpd_client_message_rate_limit: MAIL commands
	// per TimeUnit.
	MessageRateLimit int
	// RecipientRateLimit is smtpd_client_recipient_rate_limit: RCPT
	// commands per TimeUnit.
	RecipientRateLimit int
	// AuthRateLimit is smtpd_client_auth_rate_limit: AUTH commands per
	// TimeUnit.
	AuthRateLimit int
	// NewTLSSessionRateLimit is smtpd_client_new_tls_session_rate_limit:
	// new (not resumed) TLS handshakes per TimeUnit.
	NewTLSSessionRateLimit int
	// TimeUnit is anvil_rate_time_unit (60s); zero means 60s.
	TimeUnit time.Duration
	// Exceptions is smtpd_client_event_limit_exceptions (default
	// $mynetworks): a host match list (names, addresses, networks,
	// type:table) of clients no limit applies to.
	Exceptions []string
	// XCLIENTHosts is smtpd_authorized_xclient_hosts. Postfix's smtpd skips
	// every anvil limit for a client that may use XCLIENT (smtpd.c checks
	// xclient_allowed before each anvil call), so these are exempt too.
	XCLIENTHosts []string
	// Registry opens type:table patterns in the lists; nil means
	// maps.Default().
	Registry *maps.Registry
}

// LimitsFrom reads Limits from main.cf parameters. Errors name the
// parameter.
func LimitsFrom(c *config.Config) (Limits, error) {
	var l Limits
	var err error
	l.Hostname = c.Get("myhostname")
	ints := []struct {
		name string
		dst  *int
	}{
		{"smtpd_client_connection_count_limit", &l.ConnectionCountLimit},
		{"smtpd_client_connection_rate_limit", &l.ConnectionRateLimit},
		{"smtpd_client_message_rate_limit", &l.MessageRateLimit},
		{"smtpd_client_recipient_rate_limit", &l.RecipientRateLimit},
		{"smtpd_client_auth_rate_limit", &l.AuthRateLimit},
		{"smtpd_client_new_tls_session_rate_limit", &l.NewTLSSessionRateLimit},
	}
	for _, p := range ints {
		if *p.dst, err = c.Int(p.name); err != nil {
			return Limits{}, fmt.Errorf("smtpserver: reading limits: %w", err)
		}
		if *p.dst < 0 {
			return Limits{}, fmt.Errorf("smtpserver: reading limits: %s = %d: must not be negative", p.name, *p.dst)
		}
	}
	if l.TimeUnit, err = c.Duration("anvil_rate_time_unit"); err != nil {
		return Limits{}, fmt.Errorf("smtpserver: reading limits: %w", err)
	}
	if l.TimeUnit <= 0 {
		return Limits{}, fmt.Errorf("smtpserver: reading limits: anvil_rate_time_unit must be positive")
	}
	l.Exceptions = c.List("smtpd_client_event_limit_exceptions")
	l.XCLIENTHosts = c.List("smtpd_authorized_xclient_hosts")
	return l, nil
}

// enabled reports whether any limit is on.
func (l *Limits) enabled() bool {
	return l.ConnectionCountLimit > 0 || l.ConnectionRateLimit > 0 || l.MessageRateLimit > 0 ||
		l.RecipientRateLimit > 0 || l.AuthRateLimit > 0 || l.NewTLSSessionRateLimit > 0
}

// anvil counts connections and events per client address, in process: what
// Postfix's anvil(8) server does for all smtpd processes. The semantics are
// anvil's: each client has one rate window that starts at its first event
// and lasts TimeUnit; when an event arrives after the window has ended, all
// of the client's rates start again from zero (anvil.c resets connection,
// mail, recipient, TLS and AUTH rates together). Every attempt counts,
// refused ones included, so a client that keeps hammering stays refused
// until it pauses for a time unit, as with Postfix. An entry is dropped
// once the client has no connection and its window has ended, so memory is
// bounded by the clients seen in the last time unit.
type anvil struct {
	lim Limits
	// clock returns the time since an arbitrary origin. By default it is
	// monotonic time.Since, which reads only the runtime's monotonic
	// clock (half the cost of time.Now on a VM).
	clock  func() time.Duration
	exc    *maps.MatchList
	xcl    *maps.MatchList
	shards [anvilShards]anvilShard
}

const anvilShards = 64

type anvilShard struct {
	mu        sync.Mutex
	m         map[netip.Addr]*anvilEntry
	lastSweep time.Duration
	_         [40]byte // keep shards on separate cache lines
}

type anvilEntry struct {
	count int // connections open now
	start time.Duration
	// rates within the window that began at start
	conn, mail, rcpt, auth, ntls int
}

// newAnvil builds an anvil for lim; now is the clock (nil: time.Now).
func newAnvil(lim Limits, now func() time.Time) (*anvil, error) {
	if lim.TimeUnit <= 0 {
		lim.TimeUnit = 60 * time.Second
	}
	a := &anvil{lim: lim}
	if now == nil {
		origin := time.Now()
		a.clock = func() time.Duration { return time.Since(origin) }
	} else {
		origin := now()
		a.clock = func() time.Duration { return now().Sub(origin) }
	}
	ctx := context.Background()
	var err error
	if len(lim.Exceptions) > 0 {
		a.exc, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: "smtpd_client_event_limit_exceptions", Kind: maps.HostMatch,
			Registry: lim.Registry,
		}, lim.Exceptions)
		if err != nil {
			return nil, fmt.Errorf("smtpserver: smtpd_client_event_limit_exceptions: %w", err)
		}
	}
	if len(lim.XCLIENTHosts) > 0 {
		a.xcl, err = maps.NewMatchList(ctx, maps.MatchListConfig{
			Name: "smtpd_authorized_xclient_hosts", Kind: maps.HostMatch,
			Registry: lim.Registry,
		}, lim.XCLIENTHosts)
		if err != nil {
			return nil, fmt.Errorf("smtpserver: smtpd_authorized_xclient_hosts: %w", err)
		}
	}
	for i := range a.shards {
		a.shards[i].m = make(map[netip.Addr]*anvilEntry)
	}
	return a, nil
}

// exempt reports whether no limit applies to the client with name (the
// verified name or "unknown") and address ip. A table that cannot answer
// counts as "not exempt" and is logged, so a broken table never lifts the
// limits.
func (a *anvil) exempt(ctx context.Context, log *slog.Logger, name string, ip netip.Addr) bool {
	if a == nil {
		return true
	}
	for _, l := range []*maps.MatchList{a.xcl, a.exc} {
		if l == nil {
			continue
		}
		ok, err := l.MatchHostAddr(ctx, name, ip)
		if err != nil {
			if log != nil {
				log.Warn(fmt.Sprintf("%s[%s]: limit exceptions: %v", name, ip.Unmap(), err))
			}
			continue
		}
		if ok {
			return true
		}
	}
	return false
}

func (a *anvil) shard(ip netip.Addr) *anvilShard {
	b := ip.As16()
	var h uint64
	for i := 0; i < 16; i += 8 {
		h ^= uint64(b[i]) | uint64(b[i+1])<<8 | uint64(b[i+2])<<16 | uint64(b[i+3])<<24 |
			uint64(b[i+4])<<32 | uint64(b[i+5])<<40 | uint64(b[i+6])<<48 | uint64(b[i+7])<<56
	}
	h *= 0x9E3779B97F4A7C15
	return &a.shards[h>>58]
}

// entry returns ip's entry with its window brought up to now; the shard
// is locked by the caller.
func (s *anvilShard) entry(ip netip.Addr, now, unit time.Duration) *anvilEntry {
	if now-s.lastSweep > unit {
		s.sweep(now, unit)
	}
	e := s.m[ip]
	if e == nil {
		e = &anvilEntry{start: now}
		s.m[ip] = e
		return e
	}
	if now-e.start > unit {
		e.start = now
		e.conn, e.mail, e.rcpt, e.auth, e.ntls = 0, 0, 0, 0, 0
	}
	return e
}

// sweep drops the entries of clients without connections whose window
// has ended.
func (s *anvilShard) sweep(now, unit time.Duration) {
	s.lastSweep = now
	for k, e := range s.m {
		if e.count == 0 && now-e.start > unit {
			delete(s.m, k)
		}
	}
}

// clientAddr is the address as smtpd shows it: IPv4-mapped IPv6 unmapped.
func clientAddr(ip netip.Addr) netip.Addr { return ip.Unmap().WithZone("") }

// connect counts a new connection from ip. It always takes a slot (the
// caller must call release, also when ok is false, as smtpd tells anvil
// about every disconnect); when the count or the rate is over its limit it
// returns Postfix's 421 reply (without CRLF) and the warning to log.
// Postfix 3.7 uses the same reply text for the count and the rate limit
// (verified against a live smtpd).
func (a *anvil) connect(ip netip.Addr) (release func(), reply string, ok bool) {
	release, reply, _, ok = a.connectWarn(ip)
	return release, reply, ok
}

// connectWarn is connect that also returns the log warning (without the
// client and service parts: "Connection rate limit exceeded: 4").
func (a *anvil) connectWarn(ip netip.Addr) (release func(), reply, warn string, ok bool) {
	ip = clientAddr(ip)
	s := a.shard(ip)
	now := a.clock()
	s.mu.Lock()
	e := s.entry(ip, now, a.lim.TimeUnit)
	e.count++
	e.conn++
	count, rate := e.count, e.conn
	s.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { a.release(ip) }) }
	switch {
	case a.lim.ConnectionCountLimit > 0 && count > a.lim.ConnectionCountLimit:
		warn = fmt.Sprintf("Connection concurrency limit exceeded: %d", count)
	case a.lim.ConnectionRateLimit > 0 && rate > a.lim.ConnectionRateLimit:
		warn = fmt.Sprintf("Connection rate limit exceeded: %d", rate)
	default:
		return release, "", "", true
	}
	return release, "421 4.7.0 " + a.lim.Hostname + " Error: too many connections from " + ip.String(), warn, false
}

func (a *anvil) release(ip netip.Addr) {
	s := a.shard(ip)
	s.mu.Lock()
	if e := s.m[ip]; e != nil && e.count > 0 {
		e.count--
	}
	s.mu.Unlock()
}

// event counts one event of a kind for ip and returns its rate in the
// current window.
func (a *anvil) event(ip netip.Addr, kind int) int { return a.rate(ip, kind, true) }

// rate returns ip's rate of a kind of event in the current window, after
// counting one more when count is set.
func (a *anvil) rate(ip netip.Addr, kind int, count bool) int {
	ip = clientAddr(ip)
	s := a.shard(ip)
	now := a.clock()
	s.mu.Lock()
	e := s.entry(ip, now, a.lim.TimeUnit)
	var p *int
	switch kind {
	case evMail:
		p = &e.mail
	case evRcpt:
		p = &e.rcpt
	case evAuth:
		p = &e.auth
	default:
		p = &e.ntls
	}
	if count {
		*p++
	}
	n := *p
	s.mu.Unlock()
	return n
}

const (
	evMail = iota
	evRcpt
	evAuth
	evTLS
)

// limitEvent is one of the rate checks smtpd makes during a session.
type limitEvent struct {
	kind  int
	limit func(*Limits) int
	reply string // format with the address
	warn  string // log text before ": N from host[addr] for service S"
}

var (
	// smtpd.c mail_cmd; verified against a live Postfix 3.7.
	limMail = limitEvent{evMail, func(l *Limits) int { return l.MessageRateLimit },
		"450 4.7.1 Error: too much mail from %s", "Message delivery request rate limit exceeded"}
	// smtpd.c rcpt_cmd; verified: 450, not 452.
	limRcpt = limitEvent{evRcpt, func(l *Limits) int { return l.RecipientRateLimit },
		"450 4.7.1 Error: too many recipients from %s", "Recipient address rate limit exceeded"}
	// At AUTH, before the mechanism is looked at (verified against a
	// live Postfix 3.7 with a Dovecot-protocol backend,
	// anvil_oracle_test.go).
	limAuth = limitEvent{evAuth, func(l *Limits) int { return l.AuthRateLimit },
		"450 4.7.1 Error: too many AUTH commands from %s", "AUTH command rate limit exceeded"}
	// After a full (not resumed) TLS handshake; the reply goes out over
	// TLS, names the client as host[addr] and ends the session (verified
	// against a live Postfix 3.7, anvil_oracle_test.go).
	limTLS = limitEvent{evTLS, func(l *Limits) int { return l.NewTLSSessionRateLimit },
		"421 4.7.0 %s Error: too many new TLS sessions from %s", "New TLS session rate limit exceeded"}
)

// check counts ev for ip when its limit is on, and returns the reply and
// warning when the rate is over the limit.
func (a *anvil) check(ip netip.Addr, ev limitEvent) (reply, warn string, ok bool) {
	if a == nil {
		return "", "", true
	}
	limit := ev.limit(&a.lim)
	if limit <= 0 {
		return "", "", true
	}
	n := a.event(ip, ev.kind)
	if n <= limit {
		return "", "", true
	}
	addr := clientAddr(ip).String()
	if ev.kind == evTLS {
		// ClientLimits puts in the client's name.
		reply = fmt.Sprintf(ev.reply, a.lim.Hostname, "unknown["+addr+"]")
	} else {
		reply = fmt.Sprintf(ev.reply, addr)
	}
	return reply, fmt.Sprintf("%s: %d", ev.warn, n), false
}

// message counts a MAIL command (smtpd_client_message_rate_limit).
func (a *anvil) message(ip netip.Addr) (reply string, ok bool) {
	reply, _, ok = a.check(ip, limMail)
	return reply, ok
}

// recipient counts a RCPT command (smtpd_client_recipient_rate_limit).
func (a *anvil) recipient(ip netip.Addr) (reply string, ok bool) {
	reply, _, ok = a.check(ip, limRcpt)
	return reply, ok
}

// auth counts an AUTH command (smtpd_client_auth_rate_limit).
func (a *anvil) auth(ip netip.Addr) (reply string, ok bool) {
	reply, _, ok = a.check(ip, limAuth)
	return reply, ok
}

// newTLSSession counts a full TLS handshake
// (smtpd_client_new_tls_session_rate_limit).
func (a *anvil) newTLSSession(ip netip.Addr) (reply string, ok bool) {
	reply, _, ok = a.check(ip, limTLS)
	return reply, ok
}

// size returns the number of clients tracked (for tests).
func (a *anvil) size() int {
	n := 0
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// ClientLimits is the anvil as one connection sees it: the protocol engine
// calls Message at MAIL, Recipient at RCPT and Auth at AUTH. A nil
// *ClientLimits, or one for an exempt client, allows everything.
type ClientLimits struct {
	a       *anvil
	ip      netip.Addr
	exempt  bool
	log     *slog.Logger
	service string
	namaddr func() string // "host[addr]" for warnings, as the session knows it now
}

func (c *ClientLimits) check(ev limitEvent) (string, bool) {
	if c == nil || c.exempt || c.a == nil {
		return "", true
	}
	reply, warn, ok := c.a.check(c.ip, ev)
	if ok {
		return "", true
	}
	na := c.name()
	if ev.kind == evTLS {
		reply = fmt.Sprintf(ev.reply, c.a.lim.Hostname, na)
	}
	if c.log != nil {
		c.log.Warn(fmt.Sprintf("%s from %s for service %s", warn, na, c.service))
	}
	return reply, false
}

// name is the client as "host[addr]".
func (c *ClientLimits) name() string {
	if c.namaddr != nil {
		return c.namaddr()
	}
	return "unknown[" + clientAddr(c.ip).String() + "]"
}

// Message counts a MAIL command; when the client is over
// smtpd_client_message_rate_limit it returns the reply to send instead of
// accepting the command, and logs Postfix's warning.
func (c *ClientLimits) Message() (reply string, ok bool) { return c.check(limMail) }

// Recipient counts a RCPT command (smtpd_client_recipient_rate_limit).
func (c *ClientLimits) Recipient() (reply string, ok bool) { return c.check(limRcpt) }

// Auth counts an AUTH command (smtpd_client_auth_rate_limit).
func (c *ClientLimits) Auth() (reply string, ok bool) { return c.check(limAuth) }

// NewTLSSession counts a full TLS handshake
// (smtpd_client_new_tls_session_rate_limit); the engine calls it after
// the handshake, and not for a resumed session, as Postfix does. On
// refusal the reply is a 421, sent over the new TLS layer, and the
// session ends.
func (c *ClientLimits) NewTLSSession() (reply string, ok bool) { return c.check(limTLS) }

// NewTLSSessionStatus reports, without counting, whether the client is
// already over smtpd_client_new_tls_session_rate_limit; STARTTLS is then
// refused with the 454 reply returned and the session goes on in
// plaintext (Postfix 3.7, anvil_oracle_test.go). Nothing is logged.
func (c *ClientLimits) NewTLSSessionStatus() (reply string, ok bool) {
	if c == nil || c.exempt || c.a == nil || c.a.lim.NewTLSSessionRateLimit <= 0 {
		return "", true
	}
	if c.a.rate(c.ip, evTLS, false) > c.a.lim.NewTLSSessionRateLimit {
		return "454 4.7.0 Error: too many new TLS sessions from " + c.name(), false
	}
	return "", true
}

// SetName sets how warnings name the client ("host[addr]"), once the
// engine knows the verified name.
func (c *ClientLimits) SetName(namaddr func() string) {
	if c != nil {
		c.namaddr = namaddr
	}
}

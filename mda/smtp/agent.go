package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/resolver"
	"github.com/postkit-mail/postkit/smtpclient"
)

// Agent is the smtp(8) or lmtp(8) delivery agent: a queue.Deliverer.
// It is safe for concurrent use; Close ends its cached sessions.
type Agent struct {
	cfg   Config
	opts  Options
	res   resolver.Resolver
	log   *slog.Logger
	cache sessionCache
	// loopPort is the port mail-loop detection applies to (25; tests
	// change it through export_test.go).
	loopPort int
}

// New returns an Agent for cfg, filling in Postfix's defaults.
func New(cfg Config, opts Options) (*Agent, error) {
	if cfg.MyHostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("mda/smtp: myhostname: %w", err)
		}
		cfg.MyHostname = h
	}
	if cfg.HeloName == "" {
		cfg.HeloName = cfg.MyHostname
	}
	if cfg.Port == 0 {
		cfg.Port = 25
		if cfg.LMTP {
			cfg.Port = 24
		}
	}
	if cfg.MXAddressLimit == 0 {
		cfg.MXAddressLimit = 5
	}
	if cfg.MXSessionLimit <= 0 {
		cfg.MXSessionLimit = 2
	}
	if cfg.CacheTimeLimit == 0 {
		cfg.CacheTimeLimit = 2 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 300 * time.Second
	}
	if cfg.ReuseTimeLimit <= 0 {
		cfg.ReuseTimeLimit = 300 * time.Second
	}
	if !cfg.IPv4 && !cfg.IPv6 {
		cfg.IPv4 = true
	}
	cfg.TLSLevel = strings.ToLower(cfg.TLSLevel)
	a := &Agent{cfg: cfg, opts: opts, res: opts.Resolver, log: opts.Logger, loopPort: 25}
	if a.res == nil {
		r, err := resolver.NewFromResolvConf()
		if err != nil {
			return nil, fmt.Errorf("mda/smtp: %w", err)
		}
		a.res = r
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a, nil
}

// Close ends the cached idle sessions with QUIT.
func (a *Agent) Close() error {
	a.cache.closeAll(a.quitTimeout())
	return nil
}

// IdleSessions is the number of sessions waiting in the connection cache.
func (a *Agent) IdleSessions() int { return a.cache.idleCount() }

func (a *Agent) quitTimeout() time.Duration {
	if t := a.cfg.Timeouts.Quit; t > 0 && t < 5*time.Second {
		return t
	}
	return 5 * time.Second
}

// txn is the envelope of one delivery request, after smtp_generic_maps.
type txn struct {
	from    string
	arrival time.Time           // when the message arrived (Postfix's incoming_arrival)
	started time.Time           // when this attempt began (active_arrival)
	env     smtpclient.Envelope // without recipients
	rcpts   []smtpclient.Rcpt   // one per Delivery.Recipients entry
}

func (a *Agent) prepare(ctx context.Context, d *queue.Delivery) (*txn, *failure) {
	e := d.Envelope
	tx := &txn{from: e.Sender, arrival: e.Arrival, started: time.Now()}
	tx.env = smtpclient.Envelope{From: e.Sender, Size: d.Size, Body: e.Body, SMTPUTF8: e.SMTPUTF8, Ret: e.Ret, EnvID: e.EnvID}
	if tx.env.Size == 0 {
		tx.env.Size = e.Size
	}
	generic := func(addr string) (string, *failure) {
		if a.cfg.Generic == nil || addr == "" {
			return addr, nil
		}
		out, err := a.cfg.Generic.Generic(ctx, addr)
		if err != nil {
			return "", &failure{dsn: "4.3.0", reason: fmt.Sprintf("smtp_generic_maps lookup error for %s: %v", addr, err)}
		}
		return out, nil
	}
	var f *failure
	if tx.env.From, f = generic(e.Sender); f != nil {
		return nil, f
	}
	for _, r := range d.Recipients {
		addr, f := generic(r.Addr)
		if f != nil {
			return nil, f
		}
		// Without an ORCPT from the client, Postfix sends the original
		// recipient as one (smtp_proto.c; oracle_test.go).
		orcpt := r.ORCPT
		if orcpt == "" && r.Original != "" {
			orcpt = "rfc822;" + r.Original
		}
		tx.rcpts = append(tx.rcpts, smtpclient.Rcpt{Addr: addr, Notify: r.Notify, ORCPT: orcpt})
	}
	return tx, nil
}

// Deliver implements queue.Deliverer: it tries the destination's servers
// in order (spec §8.6) and returns one Result per recipient.
func (a *Agent) Deliver(ctx context.Context, d *queue.Delivery) []queue.Result {
	start := time.Now()
	results := make([]queue.Result, len(d.Recipients))
	pending := make([]int, len(d.Recipients))
	for i := range pending {
		pending[i] = i
	}
	giveUp := func(f *failure) {
		for _, i := range pending {
			results[i] = f.result(time.Since(start))
		}
		pending = nil
	}
	tx, f := a.prepare(ctx, d)
	if f != nil {
		giveUp(f)
		return results
	}
	nexthop := d.Nexthop
	if nexthop == "" && len(d.Recipients) > 0 {
		if at := strings.LastIndexByte(d.Recipients[0].Addr, '@'); at >= 0 {
			nexthop = d.Recipients[0].Addr[at+1:]
		}
	}
	dests, err := parseDests(nexthop, a.cfg.LMTP, a.cfg.Port)
	if err == nil && len(dests) == 0 {
		err = errors.New("empty destination")
	}
	if err != nil {
		giveUp(&failure{dsn: "4.3.5", reason: fmt.Sprintf("bad next-hop destination %q: %v", nexthop, err)})
		return results
	}
	for _, fb := range a.cfg.FallbackRelay {
		fd, err := parseDest(fb, a.cfg.LMTP, a.cfg.Port)
		if err != nil {
			a.log.Warn("ignoring bad smtp_fallback_relay entry", "entry", fb, "error", err)
			continue
		}
		dests = append(dests, fd)
	}

	var last *failure
	sessions := 0
	note := func(f *failure) {
		last = f
		a.log.Info(f.reason, "queue_id", d.QueueID, "dsn", f.dsn)
	}
outer:
	for di, dst := range dests {
		lastDest := di == len(dests)-1
		key := a.cacheKey(dst, tx)
		// A cached session to this destination goes first.
		if s := a.cache.get(key); s != nil {
			if err := s.c.Reset(ctx); err == nil {
				sessions++
				var keepOpen bool
				pending, f, keepOpen = a.transact(ctx, s, tx, d, pending, results, false, time.Since(start))
				a.release(s, keepOpen)
				if f != nil {
					note(f)
				}
				if len(pending) == 0 || sessions >= a.cfg.MXSessionLimit {
					break outer
				}
			} else {
				s.c.Close()
			}
		}
		policy, f := a.policyFor(ctx, dst)
		if f != nil {
			note(f)
			continue
		}
		targets, f := a.targets(ctx, dst)
		if f != nil {
			note(f)
			if f.stop {
				break
			}
			continue
		}
		for ti, t := range targets {
			lastAddr := lastDest && ti == len(targets)-1
			s, f := a.open(ctx, dst, t, policy, tx)
			if f != nil {
				note(f)
				if f.stop {
					break outer
				}
				continue
			}
			s.key = key
			sessions++
			final := lastAddr || sessions >= a.cfg.MXSessionLimit
			var keepOpen bool
			pending, f, keepOpen = a.transact(ctx, s, tx, d, pending, results, final, time.Since(start))
			a.release(s, keepOpen)
			if f != nil {
				note(f)
			}
			if len(pending) == 0 || sessions >= a.cfg.MXSessionLimit {
				break outer
			}
			if ctx.Err() != nil {
				break outer
			}
		}
	}
	if len(pending) > 0 {
		if last == nil {
			last = &failure{dsn: "4.4.1", reason: "no server for " + nexthop + " could be tried", site: true}
		}
		giveUp(last)
	}
	return results
}

// result turns a failure into a Result.
func (f *failure) result(elapsed time.Duration) queue.Result {
	r := queue.Result{Outcome: queue.Delayed, DSN: f.dsn, Reason: f.reason, Site: f.site, Relay: f.relay, Conn: elapsed}
	if f.hard() {
		r.Outcome = queue.Failed
	}
	return r
}

func (a *Agent) cacheKey(d dest, tx *txn) string {
	k := d.raw
	if a.cfg.SASLEnable && a.cfg.SenderDependentAuth {
		k += "\x00" + tx.from
	}
	return k
}

// release puts a healthy session into the cache, or ends it.
func (a *Agent) release(s *session, keepOpen bool) {
	if !keepOpen || s.c.Broken() != nil {
		quit(s, a.quitTimeout())
		return
	}
	a.cache.put(s, a.cfg.CacheTimeLimit, a.cfg.ReuseTimeLimit, a.quitTimeout())
}

// dial opens a connection.
func (a *Agent) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if a.opts.Dialer != nil {
		return a.opts.Dialer(ctx, network, addr)
	}
	to := a.cfg.Timeouts.Connect
	if to <= 0 {
		to = 30 * time.Second
	}
	dl := net.Dialer{Timeout: to}
	if network == "tcp" {
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			bind := a.cfg.BindAddress
			if ap.Addr().Is6() {
				bind = a.cfg.BindAddress6
			}
			if bind.IsValid() {
				dl.LocalAddr = &net.TCPAddr{IP: bind.AsSlice()}
			}
		}
	}
	return dl.DialContext(ctx, network, addr)
}

// open connects to one server and runs greeting, EHLO, STARTTLS and AUTH
// as the policy says. At security level may, a failed TLS handshake is
// retried once in plaintext when Postfix would
// (PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE): the message waited at
// least minimal_backoff_time before this attempt, and there are no SASL
// credentials for this server. Otherwise the server is given up like one
// at a mandatory level.
func (a *Agent) open(ctx context.Context, d dest, t target, p tlsPolicy, tx *txn) (*session, *failure) {
	s, f, retryPlain := a.openOnce(ctx, d, t, p, tx, false)
	if !retryPlain {
		return s, f
	}
	fallback := tx.started.Sub(tx.arrival) >= a.cfg.MinBackoff
	if fallback && a.cfg.SASLEnable {
		_, _, found, err := a.credentials(ctx, tx.from, d, t)
		fallback = err == nil && !found
	}
	if !fallback {
		f.reason = "Cannot start TLS: handshake failure"
		return nil, f
	}
	a.log.Info(f.reason+"; trying again without TLS", "server", t.site(a.cfg.MyHostname))
	s, f, _ = a.openOnce(ctx, d, t, p, tx, true)
	return s, f
}

func (a *Agent) openOnce(ctx context.Context, d dest, t target, p tlsPolicy, tx *txn, plain bool) (*session, *failure, bool) {
	site, relay := t.site(a.cfg.MyHostname), t.relay(a.cfg.MyHostname)
	network, addr := "tcp", netip.AddrPortFrom(t.addr, uint16(t.port)).String()
	where := site + ":" + strconv.Itoa(t.port)
	if t.unix != "" {
		network, addr, where = "unix", t.unix, site
	}
	conn, err := a.dial(ctx, network, addr)
	if err != nil {
		return nil, &failure{dsn: "4.4.1", site: true, reason: fmt.Sprintf("connect to %s: %s", where, sysText(err))}, false
	}
	c, err := smtpclient.NewClient(ctx, conn, smtpclient.Options{
		LMTP: a.cfg.LMTP, LocalName: a.cfg.HeloName, NeverEHLO: a.cfg.NeverEHLO,
		Timeouts: a.cfg.Timeouts, LineLengthLimit: a.cfg.LineLengthLimit,
		DisableMIMEConversion: a.cfg.DisableMIMEConversion,
	})
	s := &session{c: c, t: t, relay: relay, site: site, created: time.Now(), waitQuit: a.cfg.WaitQuitReply}
	if err != nil {
		var re *smtpclient.ReplyError
		if errors.As(err, &re) {
			quit(s, a.quitTimeout())
			f := &failure{dsn: re.Reply.DSN(), site: true, relay: relay, reason: fmt.Sprintf("host %s refused to talk to me: %s", site, re.Reply)}
			if f.hard() && !a.cfg.Bounce5xxGreeting {
				f.dsn = softDSN(f.dsn)
			}
			return nil, f, false
		}
		conn.Close()
		return nil, a.connFailure(err, t), false
	}
	fail := func(f *failure) (*session, *failure, bool) {
		quit(s, a.quitTimeout())
		f.site, f.relay = true, relay
		return nil, f, false
	}
	if err := c.Hello(ctx); err != nil {
		var re *smtpclient.ReplyError
		if errors.As(err, &re) {
			// Postfix words a refused HELO/EHLO/LHLO like a refused
			// greeting (oracle_test.go).
			return fail(&failure{dsn: re.Reply.DSN(), reason: fmt.Sprintf("host %s refused to talk to me: %s", site, re.Reply)})
		}
		return fail(a.connFailure(err, t))
	}
	if a.loopDetect(t.port) && strings.EqualFold(c.ServerName(), a.cfg.MyHostname) {
		// The server calls itself by our name: this is a loop.
		return fail(&failure{dsn: "5.4.6", reason: fmt.Sprintf("mail for %s loops back to myself", d.host)})
	}
	if t.unix == "" && p.level != "none" {
		switch {
		case !c.Extensions().StartTLS:
			if p.mandatory() {
				return fail(&failure{dsn: "4.7.4", reason: fmt.Sprintf("TLS is required, but was not offered by host %s", site)})
			}
		case plain:
		default:
			err := c.StartTLS(ctx, a.tlsConfig(p, d, t))
			var re *smtpclient.ReplyError
			var te *smtpclient.TLSError
			var nv *errNotVerified
			switch {
			case err == nil:
			case errors.As(err, &re):
				if p.mandatory() {
					return fail(&failure{dsn: "4.7.5", reason: fmt.Sprintf("TLS is required, but host %s refused to start TLS: %s", site, re.Reply)})
				}
				// Opportunistic: go on in plaintext on this session.
			case errors.As(err, &nv):
				return fail(&failure{dsn: "4.7.5", reason: "Server certificate not verified"})
			case errors.As(err, &te):
				if p.mandatory() {
					return fail(&failure{dsn: "4.7.5", reason: "Cannot start TLS: handshake failure"})
				}
				s.c.Close()
				return nil, &failure{dsn: "4.7.5", site: true, relay: relay, reason: fmt.Sprintf("Cannot start TLS: handshake failure with %s", site)}, true
			default:
				return fail(a.connFailure(err, t))
			}
		}
	}
	if f := a.authenticate(ctx, c, tx, d, t); f != nil {
		return fail(f)
	}
	return s, nil, false
}

// connFailure words a broken conversation as Postfix does.
func (a *Agent) connFailure(err error, t target) *failure {
	site := t.site(a.cfg.MyHostname)
	var ce *smtpclient.Error
	if errors.As(err, &ce) {
		if ce.Timeout() {
			return &failure{dsn: "4.4.2", site: true, relay: t.relay(a.cfg.MyHostname), reason: fmt.Sprintf("conversation with %s timed out while %s", site, ce.Stage)}
		}
		return &failure{dsn: "4.4.2", site: true, relay: t.relay(a.cfg.MyHostname), reason: fmt.Sprintf("lost connection with %s while %s", site, ce.Stage)}
	}
	return &failure{dsn: "4.4.2", site: true, relay: t.relay(a.cfg.MyHostname), reason: fmt.Sprintf("conversation with %s failed: %v", site, err)}
}

func isConnErr(err error) bool {
	var ce *smtpclient.Error
	return errors.As(err, &ce)
}

// sysText is the strerror-style text of a connect error ("Connection
// refused").
func sysText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return "Connection timed out"
	}
	return err.Error()
}

// transact runs one mail transaction for the pending recipients on s and
// records the outcome of each recipient it settles. It returns the
// recipients left for the next server (soft failures on a server that is
// not the final one), the failure that left them, and whether the session
// may be cached.
func (a *Agent) transact(ctx context.Context, s *session, tx *txn, d *queue.Delivery, pending []int, results []queue.Result, final bool, conn time.Duration) ([]int, *failure, bool) {
	xstart := time.Now()
	env := tx.env
	env.Rcpts = make([]smtpclient.Rcpt, len(pending))
	for j, i := range pending {
		env.Rcpts[j] = tx.rcpts[i]
	}
	var keep []int
	var last *failure
	set := func(j int, outcome queue.Outcome, dsn, reason string, site bool) {
		results[pending[j]] = queue.Result{Outcome: outcome, DSN: dsn, Reason: reason, Relay: s.relay, Site: site, Conn: conn, Xfer: time.Since(xstart)}
	}
	settle := func(j int, f *failure) {
		switch {
		case f.hard():
			set(j, queue.Failed, f.dsn, f.reason, f.site)
		case final:
			set(j, queue.Delayed, f.dsn, f.reason, f.site)
		default:
			keep = append(keep, pending[j])
			last = f
		}
	}
	said := func(r smtpclient.Reply, cmd string) *failure {
		return &failure{dsn: r.DSN(), relay: s.relay, reason: fmt.Sprintf("host %s said: %s (in reply to %s)", s.site, r, cmd)}
	}
	all := func(f *failure) {
		for j := range pending {
			settle(j, f)
		}
	}

	body, err := d.Open()
	if err != nil {
		// A local problem, not the server's: every recipient is deferred
		// here (leaving them for the next server would drop them).
		final = true
		all(&failure{dsn: "4.3.0", reason: fmt.Sprintf("cannot read the queued message: %v", err)})
		return nil, nil, true
	}
	var content io.Reader = body
	if a.cfg.Generic != nil {
		if content, err = a.genericHeaders(ctx, body); err != nil {
			body.Close()
			all(&failure{dsn: "4.3.0", reason: fmt.Sprintf("smtp_generic_maps lookup error: %v", err)})
			return keep, last, true
		}
	}
	res, err := s.c.Send(ctx, &env, content)
	body.Close()
	var se *smtpclient.SizeError
	var be *smtpclient.BodyError
	switch {
	case err == nil:
	case errors.As(err, &se):
		all(&failure{dsn: "5.3.4", reason: fmt.Sprintf("message size %d exceeds size limit %d of server %s", se.Size, se.Limit, s.site)})
		return keep, last, true
	case errors.Is(err, smtpclient.ErrSMTPUTF8Required):
		all(&failure{dsn: "5.6.7", reason: fmt.Sprintf("SMTPUTF8 is required, but was not offered by host %s", s.site)})
		return keep, last, true
	case errors.As(err, &be):
		final = true
		all(&failure{dsn: "4.3.0", reason: fmt.Sprintf("error reading the queued message: %v", be.Err)})
		return nil, nil, false
	default:
		// The conversation broke: replies already received stand, the
		// rest is a site failure.
		lost := a.connFailure(err, s.t)
		for j := range pending {
			r := res.Rcpt[j]
			switch {
			case res.Mail.Code/100 == 2 && (r.Code/100 == 4 || r.Code/100 == 5):
				// A refusal received before the loss stands, in the
				// server's words (Postfix 3.7; lost_oracle_test.go).
				settle(j, said(r, "RCPT TO command"))
			case res.Final[j].Code/100 == 2:
				set(j, queue.Delivered, res.Final[j].DSN(), res.Final[j].String(), false)
			case res.Final[j].Code/100 == 4 || res.Final[j].Code/100 == 5:
				settle(j, said(res.Final[j], "end of DATA command"))
			default:
				settle(j, lost)
			}
		}
		return keep, last, false
	}
	reusable := true
	for _, r := range append([]smtpclient.Reply{res.Mail, res.Data}, res.Final...) {
		if r.Code == 421 {
			reusable = false
		}
	}
	for _, r := range res.Rcpt {
		if r.Code == 421 {
			reusable = false
		}
	}
	if res.Mail.Code/100 != 2 {
		all(said(res.Mail, "MAIL FROM command"))
		return keep, last, reusable
	}
	// A 421 part-way ends the session: replies after it never came.
	var closing *failure
	for _, r := range res.Rcpt {
		if r.Code == 421 && closing == nil {
			closing = said(r, "RCPT TO command")
		}
	}
	if res.Data.Code == 421 && closing == nil {
		closing = said(res.Data, "DATA command")
	}
	for j := range pending {
		r := res.Rcpt[j]
		switch {
		case r.Code == 0 && closing != nil:
			settle(j, closing)
		case r.Code/100 != 2:
			settle(j, said(r, "RCPT TO command"))
		case res.Data.Code == 0 && closing != nil:
			settle(j, closing)
		case res.Data.Code != 354:
			settle(j, said(res.Data, "DATA command"))
		case res.Final[j].Code/100 == 2:
			set(j, queue.Delivered, res.Final[j].DSN(), res.Final[j].String(), false)
		default:
			settle(j, said(res.Final[j], "end of DATA command"))
		}
	}
	return keep, last, reusable
}

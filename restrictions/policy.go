package restrictions

// check_policy_service: Postfix's SMTP access policy delegation
// (SMTPD_POLICY_README, smtpd_check.c check_policy_service, attr_clnt.c,
// auto_clnt.c). A request is a list of name=value lines ended by an empty
// line; the reply holds an "action=..." line, read like an access(5)
// table value.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// PolicyConfig holds the smtpd_policy_service_* settings that apply to every
// check_policy_service; a service written as "{ inet:host:port, timeout=10s,
// default_action=DUNNO }" overrides them for itself (postconf(5), Postfix
// 3.0 and later). A zero field means Postfix's default. Times set here
// may be below a second; main.cf and the braces take whole seconds, at
// least 1.
type PolicyConfig struct {
	// Timeout bounds one attempt: connecting, sending the request and
	// reading the reply (smtpd_policy_service_timeout, 100s).
	Timeout time.Duration
	// MaxIdle closes a connection that has not been used for this long
	// (smtpd_policy_service_max_idle, 300s).
	MaxIdle time.Duration
	// MaxTTL closes a connection this old, used or not
	// (smtpd_policy_service_max_ttl, 1000s).
	MaxTTL time.Duration
	// RequestLimit closes a connection after this many requests
	// (smtpd_policy_service_request_limit); 0, the default, means no limit.
	RequestLimit int
	// TryLimit is how many attempts one query makes before the default
	// action applies (smtpd_policy_service_try_limit, 2).
	TryLimit int
	// RetryDelay is the wait between attempts
	// (smtpd_policy_service_retry_delay, 1s).
	RetryDelay time.Duration
	// DefaultAction is the access(5) action taken when the server cannot
	// be reached, times out or answers something malformed
	// (smtpd_policy_service_default_action,
	// "451 4.3.5 Server configuration problem").
	DefaultAction string
	// PolicyContext is sent as the policy_context attribute
	// (smtpd_policy_service_policy_context, empty).
	PolicyContext string

	// MaxConnections bounds the connections open to one service at a
	// time; a query waits (within Timeout) for a free one. Postfix has one
	// connection per smtpd process, so its bound is the smtpd process
	// limit; 0 means 100, default_process_limit. Not a main.cf parameter.
	MaxConnections int
	// CompatibilityLevel and MailVersion, when either is set, are sent as
	// the compatibility_level and mail_version attributes after
	// policy_context, as Postfix 3.8 and later do. Postfix 3.7 sends
	// neither, and neither is sent by default.
	CompatibilityLevel string
	MailVersion        string
}

// Postfix 3.7's defaults (postconf -d).
const (
	defaultPolicyTimeout    = 100 * time.Second
	defaultPolicyMaxIdle    = 300 * time.Second
	defaultPolicyMaxTTL     = 1000 * time.Second
	defaultPolicyTryLimit   = 2
	defaultPolicyRetryDelay = time.Second
	defaultPolicyAction     = "451 4.3.5 Server configuration problem"
	defaultPolicyMaxConns   = 100
	maxPolicyConns          = 1 << 16
)

func defaultPolicyConfig() PolicyConfig {
	return PolicyConfig{
		Timeout:        defaultPolicyTimeout,
		MaxIdle:        defaultPolicyMaxIdle,
		MaxTTL:         defaultPolicyMaxTTL,
		TryLimit:       defaultPolicyTryLimit,
		RetryDelay:     defaultPolicyRetryDelay,
		DefaultAction:  defaultPolicyAction,
		MaxConnections: defaultPolicyMaxConns,
	}
}

// policyConfigFrom reads the smtpd_policy_service_* parameters, with the
// lower bounds Postfix's smtpd enforces at start-up (smtpd.c: the times at
// least 1s, try_limit at least 1, a non-empty default action).
func policyConfigFrom(p *params) PolicyConfig {
	cfg := PolicyConfig{
		Timeout:        p.Duration("smtpd_policy_service_timeout"),
		MaxIdle:        p.Duration("smtpd_policy_service_max_idle"),
		MaxTTL:         p.Duration("smtpd_policy_service_max_ttl"),
		RequestLimit:   p.Int("smtpd_policy_service_request_limit"),
		TryLimit:       p.Int("smtpd_policy_service_try_limit"),
		RetryDelay:     p.Duration("smtpd_policy_service_retry_delay"),
		DefaultAction:  p.Str("smtpd_policy_service_default_action"),
		PolicyContext:  p.Str("smtpd_policy_service_policy_context"),
		MaxConnections: defaultPolicyMaxConns,
	}
	if p.Err() != nil {
		return cfg
	}
	minTime := func(name string, d time.Duration) {
		if d < time.Second {
			p.Keep(&ConfigError{Param: name, Err: fmt.Errorf("invalid %s: %d (min 1)", name, int64(d/time.Second))})
		}
	}
	minTime("smtpd_policy_service_timeout", cfg.Timeout)
	minTime("smtpd_policy_service_max_idle", cfg.MaxIdle)
	minTime("smtpd_policy_service_max_ttl", cfg.MaxTTL)
	minTime("smtpd_policy_service_retry_delay", cfg.RetryDelay)
	if cfg.TryLimit < 1 {
		p.Keep(&ConfigError{Param: "smtpd_policy_service_try_limit",
			Err: fmt.Errorf("invalid smtpd_policy_service_try_limit parameter value %d < 1", cfg.TryLimit)})
	}
	if cfg.RequestLimit < 0 {
		p.Keep(&ConfigError{Param: "smtpd_policy_service_request_limit",
			Err: fmt.Errorf("invalid smtpd_policy_service_request_limit parameter value %d < 0", cfg.RequestLimit)})
	}
	if cfg.DefaultAction == "" {
		p.Keep(&ConfigError{Param: "smtpd_policy_service_default_action",
			Err: errors.New("bad string length 0 < 1: smtpd_policy_service_default_action = ")})
	}
	return cfg
}

// withDefaults fills zero fields with Postfix's defaults and refuses
// negative ones.
func (pc PolicyConfig) withDefaults() (PolicyConfig, error) {
	d := defaultPolicyConfig()
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"smtpd_policy_service_timeout", &pc.Timeout, d.Timeout},
		{"smtpd_policy_service_max_idle", &pc.MaxIdle, d.MaxIdle},
		{"smtpd_policy_service_max_ttl", &pc.MaxTTL, d.MaxTTL},
		{"smtpd_policy_service_retry_delay", &pc.RetryDelay, d.RetryDelay},
	} {
		if *f.v < 0 {
			return pc, &ConfigError{Param: f.name, Err: fmt.Errorf("negative time %v", *f.v)}
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"smtpd_policy_service_try_limit", &pc.TryLimit, d.TryLimit},
		{"smtpd_policy_service_request_limit", &pc.RequestLimit, 0},
		{"PolicyConfig.MaxConnections", &pc.MaxConnections, d.MaxConnections},
	} {
		if *f.v < 0 {
			return pc, &ConfigError{Param: f.name, Err: fmt.Errorf("negative value %d", *f.v)}
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if pc.MaxConnections > maxPolicyConns {
		return pc, &ConfigError{Param: "PolicyConfig.MaxConnections",
			Err: fmt.Errorf("%d is more than %d", pc.MaxConnections, maxPolicyConns)}
	}
	if pc.DefaultAction == "" {
		pc.DefaultAction = d.DefaultAction
	}
	return pc, nil
}

// policyService is one check_policy_service argument, parsed: the endpoint
// and the settings that apply to it.
type policyService struct {
	network  string // "tcp" or "unix", for net.Dial
	address  string // the dial address
	endpoint string // Postfix's name for it in warnings: host:port or path
	cfg      PolicyConfig
}

// parsePolicyService parses a check_policy_service argument: a bare
// "inet:host:port" or "unix:/path", or "{ endpoint, name=value, ... }"
// where each setting may itself be braced to hold spaces: "{
// inet:127.0.0.1:9998, { default_action = REJECT busy } }"
// (smtpd_check.c policy_client_register, attr_override.c). Every error is
// one Postfix's smtpd reports as fatal at start-up; the messages are its.
func parsePolicyService(spec string, base PolicyConfig) (policyService, error) {
	svc := policyService{cfg: base}
	name := spec
	if strings.HasPrefix(spec, "{") {
		inner, err := extpar(spec)
		if err != nil {
			return svc, fmt.Errorf("policy service syntax error: %w", err)
		}
		var rest string
		name, rest = firstToken(inner)
		if name == "" {
			return svc, fmt.Errorf("empty policy service: %q", spec)
		}
		for tok, more := nextTokenQ(rest); tok != ""; tok, more = nextTokenQ(more) {
			if err := svc.override(tok); err != nil {
				return svc, err
			}
		}
	}
	transport, endpoint, ok := strings.Cut(name, ":")
	if !ok || transport == "" || endpoint == "" {
		return svc, fmt.Errorf("need service transport:endpoint instead of %q", name)
	}
	svc.endpoint = endpoint
	switch transport {
	case "inet":
		host, port, err := splitInetEndpoint(endpoint)
		if err != nil {
			return svc, fmt.Errorf("%s: %w", endpoint, err)
		}
		svc.network, svc.address = "tcp", net.JoinHostPort(host, port)
	case "unix", "local":
		// A relative path is relative to the current directory; Postfix's
		// smtpd runs in the queue directory ("private/policy").
		svc.network, svc.address = "unix", endpoint
	default:
		return svc, fmt.Errorf("invalid transport name: %s in service: %s", transport, name)
	}
	return svc, nil
}

// override applies one "name=value" (or "{ name = value }") setting, with
// Postfix's names: the main.cf parameter without "smtpd_policy_service_".
func (svc *policyService) override(tok string) error {
	if strings.HasPrefix(tok, "{") {
		inner, err := extpar(tok)
		if err != nil {
			return err
		}
		tok = inner
	}
	key, value, err := splitNameval(tok)
	if err != nil {
		return fmt.Errorf("malformed option: %s: \"...%s...\"", err, tok)
	}
	c := &svc.cfg
	switch key {
	case "timeout", "max_idle", "max_ttl", "retry_delay":
		secs, ok := convTime(value, 's')
		if !ok {
			return fmt.Errorf("%s: bad time value or unit: %s", key, value)
		}
		if secs < 1 {
			return fmt.Errorf("invalid %s: %d (min 1)", key, secs)
		}
		d := time.Duration(secs) * time.Second
		switch key {
		case "timeout":
			c.Timeout = d
		case "max_idle":
			c.MaxIdle = d
		case "max_ttl":
			c.MaxTTL = d
		default:
			c.RetryDelay = d
		}
	case "request_limit", "try_limit":
		n, err := strconv.ParseInt(value, 10, 32)
		if err != nil {
			return fmt.Errorf("bad numerical configuration: %s = %s", key, value)
		}
		if key == "try_limit" {
			if n < 1 {
				return fmt.Errorf("invalid %s parameter value %d < 1", key, n)
			}
			c.TryLimit = int(n)
		} else {
			// Postfix takes a negative limit here and then panics.
			if n < 0 {
				return fmt.Errorf("invalid %s parameter value %d < 0", key, n)
			}
			c.RequestLimit = int(n)
		}
	case "default_action", "policy_context":
		if value == "" {
			return fmt.Errorf("bad string length 0 < 1: %s = ", key)
		}
		if key == "default_action" {
			c.DefaultAction = value
		} else {
			c.PolicyContext = value
		}
	default:
		return fmt.Errorf("unknown option: \"%s = %s\"", key, value)
	}
	return nil
}

// splitInetEndpoint splits "host:port" or "[v6addr]:port"; an empty host
// is localhost (host_port.c).
func splitInetEndpoint(ep string) (host, port string, err error) {
	if strings.HasPrefix(ep, "[") {
		end := strings.IndexByte(ep, ']')
		if end < 0 {
			return "", "", errors.New("missing \"]\"")
		}
		host, rest := ep[1:end], ep[end+1:]
		if !strings.HasPrefix(rest, ":") || len(rest) == 1 {
			return "", "", errors.New("missing service information")
		}
		return host, rest[1:], nil
	}
	i := strings.LastIndexByte(ep, ':')
	if i < 0 || i == len(ep)-1 {
		return "", "", errors.New("missing service information")
	}
	host, port = ep[:i], ep[i+1:]
	if host == "" {
		host = "localhost"
	}
	return host, port, nil
}

// policySep separates list items (CHARS_COMMA_SP).
const policySep = ", \t\r\n"

// extpar strips the outer braces of "{ ... }", which must balance and end
// the text (extpar.c, balpar.c).
func extpar(s string) (string, error) {
	level := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			level++
		case '}':
			level--
			if level == 0 {
				if i != len(s)-1 {
					return "", fmt.Errorf("syntax error after '}' in %q", s)
				}
				return s[1:i], nil
			}
		}
	}
	return "", fmt.Errorf("missing '}' in %q", s)
}

// firstToken returns the first item of s split at policySep, ignoring
// braces (mystrtok), and the rest.
func firstToken(s string) (tok, rest string) {
	s = strings.TrimLeft(s, policySep)
	i := strings.IndexAny(s, policySep)
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// nextTokenQ returns the next item of s split at policySep outside braces
// (mystrtokq), and the rest.
func nextTokenQ(s string) (tok, rest string) {
	s = strings.TrimLeft(s, policySep)
	level := 0
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '{':
			level++
		case ch == '}' && level > 0:
			level--
		case level == 0 && strings.IndexByte(policySep, ch) >= 0:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

func isCSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// splitNameval splits "name = value", trimming blanks (split_nameval.c).
func splitNameval(s string) (name, value string, err error) {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	if i == len(s) || s[i] == '=' {
		return "", "", errors.New("missing attribute name")
	}
	start := i
	for i < len(s) && !isCSpace(s[i]) && s[i] != '=' {
		i++
	}
	name = s[start:i]
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	if i == len(s) || s[i] != '=' {
		return "", "", errors.New("missing '=' after attribute name")
	}
	value = strings.TrimFunc(s[i+1:], func(r rune) bool { return r < 0x80 && isCSpace(byte(r)) })
	return name, value, nil
}

// convTime reads a time value the way Postfix 3.7's conv_time does: a
// decimal number (strtol: optional sign) and an optional unit letter s,
// m, h, d or w; text after the unit letter is ignored, and a bare number
// counts in defUnit. The result is in seconds and fits a C int.
func convTime(s string, defUnit byte) (int64, bool) {
	if s == "" {
		return 0, false
	}
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	var n int64
	for i < len(s) && isDigit(s[i]) {
		n = n*10 + int64(s[i]-'0')
		if n > 1<<31-1 {
			return 0, false
		}
		i++
	}
	end := i
	if end == start {
		// No digits: strtol consumed nothing.
		end, n, neg = 0, 0, false
	}
	if neg && n != 0 {
		return 0, false
	}
	unit := defUnit
	if end < len(s) {
		unit = s[end]
	}
	var mult int64
	switch unit {
	case 's':
		mult = 1
	case 'm':
		mult = 60
	case 'h':
		mult = 3600
	case 'd':
		mult = 86400
	case 'w':
		mult = 7 * 86400
	default:
		return 0, false
	}
	if n > (1<<31-1)/mult {
		return 0, false
	}
	return n * mult, true
}

// policyState holds one client per distinct check_policy_service
// argument, created in New and shared by all evaluations.
type policyState struct {
	clients map[string]*policyClient // by the argument as written; read-only after New
}

// newPolicyState finds every check_policy_service in the restriction
// lists and classes and parses its argument once, as Postfix's smtpd does
// at start-up (smtpd_check_parse registers the element after each
// check_policy_service). A malformed argument is a configuration error.
func newPolicyState(ctx context.Context, c *Checker) (*policyState, error) {
	ps := &policyState{clients: map[string]*policyClient{}}
	var base *PolicyConfig
	register := func(param string, l []elem) error {
		for i := range l {
			el := &l[i]
			if el.name != "check_policy_service" || el.noArg {
				continue
			}
			if _, ok := ps.clients[el.arg]; ok {
				continue
			}
			if base == nil {
				b, err := c.cfg.Policy.withDefaults()
				if err != nil {
					return err
				}
				base = &b
			}
			svc, err := parsePolicyService(el.arg, *base)
			if err != nil {
				return &ConfigError{Param: param, Err: fmt.Errorf("check_policy_service %s: %w", el.arg, err)}
			}
			ps.clients[el.arg] = newPolicyClient(svc)
		}
		return nil
	}
	for i, l := range c.lists {
		if err := register(listParams[i], l); err != nil {
			ps.close()
			return nil, err
		}
	}
	for name, l := range c.class {
		if err := register(name, l); err != nil {
			ps.close()
			return nil, err
		}
	}
	return ps, nil
}

// close closes the idle connections of every service; connections in use
// are closed when their query ends.
func (p *policyState) close() error {
	if p == nil {
		return nil
	}
	for _, pc := range p.clients {
		pc.close()
	}
	return nil
}

// policyClient is the connection pool of one policy service: Postfix's
// attr_clnt and auto_clnt, with up to MaxConnections connections instead
// of one per smtpd process.
type policyClient struct {
	svc policyService

	// now and dial are replaced by tests.
	now  func() time.Time
	dial func(ctx context.Context, network, address string) (net.Conn, error)

	slots chan struct{}    // a token for each open connection
	idle  chan *policyConn // open connections not in use (cap MaxConnections)
	done  chan struct{}    // closed by close

	mu     sync.Mutex
	closed bool
	reaper *time.Timer // closes expired idle connections
}

type policyConn struct {
	c        net.Conn
	r        *bufio.Reader
	born     time.Time
	lastUsed time.Time
	requests int
	reused   bool // taken from the pool rather than just dialled
	// spoilt: a cancellation may still change the deadline of this
	// connection, so it must not serve another query.
	spoilt bool
}

func newPolicyClient(svc policyService) *policyClient {
	var d net.Dialer
	return &policyClient{
		svc:   svc,
		now:   time.Now,
		dial:  d.DialContext,
		slots: make(chan struct{}, svc.cfg.MaxConnections),
		idle:  make(chan *policyConn, svc.cfg.MaxConnections),
		done:  make(chan struct{}),
	}
}

// expired says whether an idle connection must be closed rather than used:
// idle for max_idle, or max_ttl old (auto_clnt.c; its TTL timer is not
// restarted by use).
func (pc *policyClient) expired(cn *policyConn, now time.Time) bool {
	return now.Sub(cn.lastUsed) >= pc.svc.cfg.MaxIdle || now.Sub(cn.born) >= pc.svc.cfg.MaxTTL
}

var errPolicyClosed = errors.New("checker closed")

// get returns an idle connection or dials a new one, waiting until the
// deadline when MaxConnections are in use.
func (pc *policyClient) get(ctx context.Context, deadline time.Time) (*policyConn, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case cn := <-pc.idle:
			if pc.take(cn) {
				return cn, nil
			}
			continue
		default:
		}
		select {
		case <-pc.done:
			return nil, errPolicyClosed
		default:
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
		}
		select {
		case cn := <-pc.idle:
			if pc.take(cn) {
				return cn, nil
			}
		case pc.slots <- struct{}{}:
			dctx, cancel := context.WithDeadline(ctx, deadline)
			c, err := pc.dial(dctx, pc.svc.network, pc.svc.address)
			cancel()
			if err != nil {
				<-pc.slots
				return nil, err
			}
			now := pc.now()
			return &policyConn{c: c, r: bufio.NewReader(c), born: now, lastUsed: now}, nil
		case <-pc.done:
			return nil, errPolicyClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, fmt.Errorf("all %d connections busy: %w", cap(pc.slots), os.ErrDeadlineExceeded)
		}
	}
}

// take accepts an idle connection for use, or closes it when it expired.
func (pc *policyClient) take(cn *policyConn) bool {
	if pc.expired(cn, pc.now()) {
		pc.discard(cn)
		return false
	}
	cn.reused = true
	return true
}

// put returns a connection to the pool after a successful request, or
// closes it at the request limit.
func (pc *policyClient) put(cn *policyConn) {
	cn.requests++
	cn.lastUsed = pc.now()
	if cn.spoilt || pc.svc.cfg.RequestLimit > 0 && cn.requests >= pc.svc.cfg.RequestLimit {
		pc.discard(cn)
		return
	}
	pc.park(cn, true)
}

// park puts an open connection into the idle pool; schedule starts the
// reaper when it is not running.
func (pc *policyClient) park(cn *policyConn, schedule bool) {
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		pc.discard(cn)
		return
	}
	pc.idle <- cn // never blocks: every open connection holds a slot
	if schedule && pc.reaper == nil {
		pc.reaper = time.AfterFunc(pc.svc.cfg.MaxIdle, pc.reap)
	}
	pc.mu.Unlock()
}

func (pc *policyClient) discard(cn *policyConn) {
	cn.c.Close()
	<-pc.slots
}

// reap closes the idle connections that expired, as auto_clnt's timers
// do, so an unused service does not keep sockets open on the server, and
// runs again when the next one expires.
func (pc *policyClient) reap() {
	pc.mu.Lock()
	pc.reaper = nil
	closed := pc.closed
	pc.mu.Unlock()
	if closed {
		return
	}
	now := pc.now()
	var keep []*policyConn
drain:
	for {
		select {
		case cn := <-pc.idle:
			if pc.expired(cn, now) {
				pc.discard(cn)
			} else {
				keep = append(keep, cn)
			}
		default:
			break drain
		}
	}
	next := time.Duration(-1)
	for _, cn := range keep {
		left := min(cn.lastUsed.Add(pc.svc.cfg.MaxIdle).Sub(now), cn.born.Add(pc.svc.cfg.MaxTTL).Sub(now))
		if next < 0 || left < next {
			next = left
		}
		pc.park(cn, false)
	}
	if next < 0 {
		return
	}
	pc.mu.Lock()
	if !pc.closed && pc.reaper == nil {
		pc.reaper = time.AfterFunc(max(next, time.Millisecond), pc.reap)
	}
	pc.mu.Unlock()
}

func (pc *policyClient) close() {
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		return
	}
	pc.closed = true
	close(pc.done)
	if pc.reaper != nil {
		pc.reaper.Stop()
		pc.reaper = nil
	}
	pc.mu.Unlock()
	for {
		select {
		case cn := <-pc.idle:
			pc.discard(cn)
		default:
			return
		}
	}
}

// policyError is one failed attempt: warning is logged for it, reason
// ends the "problem talking to server" warning when no attempt is left.
type policyError struct {
	warning string
	reason  string
	// stale: a pooled connection that the server had closed while it was
	// idle, found before any reply byte arrived.
	stale bool
	// loud: a system error that Postfix reports at every attempt, not only
	// the last (anything but EPIPE, ENOENT, ECONNRESET and no error).
	loud bool
}

func (e *policyError) Error() string { return e.warning }

// query sends the request and returns the reply's action. It makes up to
// try_limit attempts, retry_delay apart, each on a working connection
// (attr_clnt.c attr_clnt_request); ok is false when none succeeded, after
// the warnings were logged.
func (pc *policyClient) query(ctx context.Context, e *eval, req []byte) (action string, ok bool) {
	cfg := &pc.svc.cfg
	for attempt := 1; ; attempt++ {
		action, err := pc.roundTrip(ctx, req)
		if err == nil {
			return action, true
		}
		e.warnf("%s", err.warning)
		last := attempt >= cfg.TryLimit || ctx.Err() != nil
		if last || err.loud {
			e.warnf("problem talking to server %s: %s", pc.svc.endpoint, err.reason)
		}
		if last {
			return "", false
		}
		if sleepCtx(ctx, cfg.RetryDelay) != nil {
			e.warnf("problem talking to server %s: %s", pc.svc.endpoint, ctx.Err())
			return "", false
		}
	}
}

// roundTrip is one attempt. A pooled connection that turns out to have
// been closed by the server does not count as an attempt: the request is
// sent again on another connection. (Postfix's single connection would
// notice the close between SMTP sessions, or spend an attempt on it.)
func (pc *policyClient) roundTrip(ctx context.Context, req []byte) (string, *policyError) {
	deadline := time.Now().Add(pc.svc.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		cn, err := pc.get(ctx, deadline)
		if err != nil {
			return "", &policyError{
				warning: fmt.Sprintf("connect to %s: %s", pc.svc.endpoint, ioReason(err)),
				reason:  ioReason(err),
				loud:    isLoud(err),
			}
		}
		action, perr := pc.exchange(ctx, cn, req, deadline)
		if perr == nil {
			pc.put(cn)
			return action, nil
		}
		pc.discard(cn)
		if !(perr.stale && cn.reused) {
			return "", perr
		}
	}
}

// aLongTimeAgo is a deadline that makes pending I/O fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes the request and reads the reply on one connection.
func (pc *policyClient) exchange(ctx context.Context, cn *policyConn, req []byte, deadline time.Time) (string, *policyError) {
	cn.c.SetDeadline(deadline)
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { cn.c.SetDeadline(aLongTimeAgo) })
		defer func() {
			if !stop() {
				cn.spoilt = true
			}
		}()
	}
	ep := pc.svc.endpoint
	if _, err := cn.c.Write(req); err != nil {
		err = ctxErr(ctx, err)
		return "", &policyError{
			warning: fmt.Sprintf("%s on %s while sending policy request", ioWhat(err), ep),
			reason:  ioReason(err),
			stale:   isStale(err),
			loud:    isLoud(err),
		}
	}
	action, n, err := readPolicyReply(cn.r)
	if err == nil {
		return action, nil
	}
	err = ctxErr(ctx, err)
	perr := &policyError{reason: ioReason(err), stale: n == 0 && isStale(err), loud: isLoud(err)}
	switch {
	case errors.Is(err, errNoAction):
		perr.warning = "missing attribute action in input from " + ep
		perr.reason = "malformed reply"
	case errors.Is(err, errNoActionValue):
		perr.warning = "missing value for string attribute action from " + ep
		perr.reason = "malformed reply"
	case errors.Is(err, errReplyTooLong):
		perr.warning = fmt.Sprintf("%v from %s", err, ep)
		perr.reason = "malformed reply"
	default:
		perr.warning = fmt.Sprintf("%s on %s while reading policy reply", ioWhat(err), ep)
	}
	return "", perr
}

// ctxErr prefers the context's error when cancellation caused err.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// isStale reports an error that means the peer had closed the connection.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isLoud reports an error that Postfix warns about at every attempt: one
// with an errno other than EPIPE, ENOENT or ECONNRESET (attr_clnt.c); a
// timeout sets ETIMEDOUT.
func isLoud(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var errno syscall.Errno
	return errors.As(err, &errno) && errno != syscall.EPIPE && errno != syscall.ENOENT && errno != syscall.ECONNRESET
}

// ioWhat names what went wrong with the stream, in Postfix's words.
func ioWhat(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "query canceled"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "premature end-of-input"
	}
	return "error (" + ioReason(err) + ")"
}

// ioReason is the system's short description of err: "Connection
// refused", "Connection timed out".
func ioReason(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "Connection timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "Connection closed by server"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		// strerror(3)'s capital, as in Postfix's warnings.
		msg := errno.Error()
		if msg != "" && msg[0] >= 'a' && msg[0] <= 'z' {
			msg = string(msg[0]-'a'+'A') + msg[1:]
		}
		return msg
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

// Reply limits. Postfix reads attribute lines of any length; these bounds
// keep a broken server from making us buffer without end. A line holds
// any header Postfix accepts (header_size_limit) for PREPEND.
const (
	maxPolicyLine  = 102400
	maxPolicyReply = 1 << 20
)

var (
	errNoAction      = errors.New("missing attribute action")
	errNoActionValue = errors.New("missing value for attribute action")
	errReplyTooLong  = fmt.Errorf("policy reply line or reply longer than %d/%d bytes", maxPolicyLine, maxPolicyReply)
)

// readPolicyReply reads one reply: name=value lines up to an empty line
// (attr_scan_plain.c). The first "action" attribute is the result; other
// attributes, later "action" lines and lines without "=" are skipped. A
// reply that ends before "action" is malformed, as is an "action" line
// without "=". Lines end at LF alone: a CR is part of the line, as for
// Postfix. n is the number of bytes read.
func readPolicyReply(r *bufio.Reader) (action string, n int, err error) {
	return readPolicyReplyLimit(r, maxPolicyLine, maxPolicyReply)
}

// readPolicyReplyLimit is readPolicyReply with the limits as arguments
// (small ones let the fuzzer reach them).
func readPolicyReplyLimit(r *bufio.Reader, maxLine, maxReply int) (action string, n int, err error) {
	found := false
	for {
		line, err := r.ReadSlice('\n')
		n += len(line)
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: collect it.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				if len(long) > maxLine {
					return "", n, errReplyTooLong
				}
				line, err = r.ReadSlice('\n')
				n += len(line)
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			return "", n, err
		}
		if len(line) > maxLine+1 || n > maxReply {
			return "", n, errReplyTooLong
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			if !found {
				return "", n, errNoAction
			}
			return action, n, nil
		}
		if found {
			continue
		}
		name, value, eq := bytes.Cut(line, []byte("="))
		if string(name) == "action" {
			if !eq {
				return "", n, errNoActionValue
			}
			action, found = string(value), true
		}
	}
}

// policyNesting counts, in the context, the default actions being applied
// (check_policy_service's nesting_level): a policy service that fails
// while another one's default action runs uses Postfix's built-in default
// instead of its own, so a default action cannot recurse.
type policyNesting struct{}

var policyBuiltins = map[string]*builtin{
	"check_policy_service": {arg: argPolicy, run: checkPolicyService},
}

func checkPolicyService(ctx context.Context, e *eval, el *elem) (status, error) {
	if el.noArg || !strings.Contains(el.arg, ":") {
		e.warnf("restriction check_policy_service must be followed by transport:server")
		return e.serverError()
	}
	var pc *policyClient
	if e.c.policy != nil {
		pc = e.c.policy.clients[el.arg]
	}
	if pc == nil {
		// Only lists parsed by New can name a policy service.
		e.warnf("check_policy_service: no client endpoint for server %s", el.arg)
		return e.serverError()
	}
	req := e.policyRequest(make([]byte, 0, 1024), &pc.svc.cfg)
	action, ok := pc.query(ctx, e, req)
	// smtputf8_enable (yes): the action must be valid UTF-8.
	if ok && !utf8.ValidString(action) {
		e.warnf("malformed UTF-8 in policy server %s response: \"%s\"", el.arg, action)
		ok = false
	}
	if ok {
		return e.tableResult(ctx, el.arg, action, "policy query", e.replyName, e.replyClass, e.defACL)
	}
	depth, _ := ctx.Value(policyNesting{}).(int)
	def := pc.svc.cfg.DefaultAction
	if depth > 0 {
		def = defaultPolicyAction
	}
	ctx = context.WithValue(ctx, policyNesting{}, depth+1)
	return e.tableResult(ctx, el.arg, def, "policy query", e.replyName, e.replyClass, e.defACL)
}

// policyRequest appends the request for the current stage to buf, in the
// order Postfix 3.7.11 sends the attributes (verified against its smtpd).
// Information that is not known is sent as an empty value; the client and
// server address and port as "unknown". The attributes reflect the
// session at the command being checked, whatever list holds
// check_policy_service: with smtpd_delay_reject a client restriction
// evaluated at RCPT sends the sender and recipient too.
func (e *eval) policyRequest(buf []byte, cfg *PolicyConfig) []byte {
	s := e.s
	state := e.where
	if strings.EqualFold(state, "BDAT") {
		state = "DATA"
	}
	// At HELO/EHLO itself, the protocol is the one in force before the
	// command: smtpd switches to ESMTP only once EHLO has passed.
	proto := s.protocol()
	if e.stage == StageHelo && s.Protocol == "" && (state == "EHLO" || state == "HELO") {
		proto = "SMTP"
	}
	sender := ""
	if hasSender(e.stage) {
		sender = s.Sender
	}
	rcpt, _ := e.recipient()
	count := 0
	if state == "DATA" || strings.EqualFold(state, "END-OF-MESSAGE") {
		count = s.RecipientCount
	}
	etrn := ""
	if e.stage == StageETRN {
		etrn = s.ETRNDomain
	}
	stress := ""
	if s.Stress {
		stress = "yes"
	}

	buf = appendAttr(buf, "request", "smtpd_access_policy")
	buf = appendAttr(buf, "protocol_state", state)
	buf = appendAttr(buf, "protocol_name", proto)
	buf = appendAttr(buf, "client_address", s.clientAddr())
	buf = appendAttr(buf, "client_name", s.clientName())
	buf = appendAttr(buf, "client_port", portOrUnknown(s.ClientPort))
	buf = appendAttr(buf, "reverse_client_name", s.reverseName())
	server := "unknown"
	if s.ServerAddr.IsValid() {
		server = s.ServerAddr.Unmap().String()
	}
	buf = appendAttr(buf, "server_address", server)
	buf = appendAttr(buf, "server_port", portOrUnknown(s.ServerPort))
	buf = appendAttr(buf, "helo_name", s.Helo)
	buf = appendAttr(buf, "sender", sender)
	buf = appendAttr(buf, "recipient", rcpt)
	buf = appendNum(buf, "recipient_count", int64(count))
	buf = appendAttr(buf, "queue_id", s.QueueID)
	buf = appendAttr(buf, "instance", s.Instance)
	buf = appendNum(buf, "size", max(s.Size, 0))
	buf = appendAttr(buf, "etrn_domain", etrn)
	buf = appendAttr(buf, "stress", stress)
	buf = appendAttr(buf, "sasl_method", s.SASLMethod)
	buf = appendAttr(buf, "sasl_username", s.SASLUsername)
	buf = appendAttr(buf, "sasl_sender", s.SASLSender)
	var subject, issuer, certFP, keyFP, tlsProto, cipher string
	bits := 0
	if t := s.TLS; t != nil {
		// The names only from a certificate that was verified; the
		// fingerprints from any (check_policy_service ENCODE_CN).
		if t.PeerCertVerified {
			subject, issuer = xtext(t.SubjectCN), xtext(t.IssuerCN)
		}
		certFP, keyFP = t.CertFingerprint, t.PubkeyFingerprint
		tlsProto, cipher, bits = t.Protocol, t.Cipher, t.CipherBits
	}
	buf = appendAttr(buf, "ccert_subject", subject)
	buf = appendAttr(buf, "ccert_issuer", issuer)
	buf = appendAttr(buf, "ccert_fingerprint", certFP)
	buf = appendAttr(buf, "ccert_pubkey_fingerprint", keyFP)
	buf = appendAttr(buf, "encryption_protocol", tlsProto)
	buf = appendAttr(buf, "encryption_cipher", cipher)
	buf = appendNum(buf, "encryption_keysize", int64(max(bits, 0)))
	buf = appendAttr(buf, "policy_context", cfg.PolicyContext)
	if cfg.CompatibilityLevel != "" || cfg.MailVersion != "" {
		buf = appendAttr(buf, "compatibility_level", cfg.CompatibilityLevel)
		buf = appendAttr(buf, "mail_version", cfg.MailVersion)
	}
	return append(buf, '\n')
}

func portOrUnknown(port int) string {
	if port <= 0 {
		return "unknown"
	}
	return strconv.Itoa(port)
}

// appendAttr appends "name=value\n". Postfix writes values as they are
// (attr_print_plain.c); its values never hold a newline or NUL, since
// they come from SMTP command lines and C strings. A Snapshot can hold
// anything, so a newline (which would end the attribute and let the rest
// pose as another one, or end the request) and NUL are sent as '?'.
func appendAttr(buf []byte, name, value string) []byte {
	buf = append(buf, name...)
	buf = append(buf, '=')
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == '\n' || c == 0 {
			c = '?'
		}
		buf = append(buf, c)
	}
	return append(buf, '\n')
}

func appendNum(buf []byte, name string, v int64) []byte {
	buf = append(buf, name...)
	buf = append(buf, '=')
	buf = strconv.AppendInt(buf, v, 10)
	return append(buf, '\n')
}

// xtext encodes a certificate name as Postfix does for ccert_subject and
// ccert_issuer (xtext_quote with no extra specials, RFC 3461 4): '+',
// space, controls and non-ASCII bytes become "+XX".
func xtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '+' && c > ' ' && c < 0x7f {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('+')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

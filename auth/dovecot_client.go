package auth

// The client side of Dovecot's authentication protocol: postkit asks a real
// Dovecot's auth process (its auth-client socket, e.g.
// /var/spool/postfix/private/auth or /run/dovecot/auth-client) to run SASL
// exchanges, as Postfix's smtpd does with smtpd_sasl_type = dovecot
// (xsasl_dovecot_server.c). One connection carries any number of
// concurrent exchanges, told apart by request id; a lost connection is
// dialled again for the next exchange.

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DovecotClientOptions configure a DovecotClient. The zero value (or nil)
// is usable.
type DovecotClientOptions struct {
	// Service is sent when neither the request nor the context's
	// ClientInfo names one. Empty means "smtp".
	Service string
	// Timeout bounds each wait for the server: dialling plus the
	// handshake, and every reply. Zero means 10 seconds, Postfix's
	// AUTH_TIMEOUT. Dovecot delays failure replies by auth_failure_delay
	// (2 s by default), so keep it above that.
	Timeout time.Duration
	// Logger receives connection losses; nil means slog.Default().
	Logger *slog.Logger
}

// DovecotClient talks to a Dovecot auth server's client socket. It is safe
// for concurrent use, and it is a DovecotBackend, so a DovecotServer can
// relay to it.
type DovecotClient struct {
	network, address string
	opts             DovecotClientOptions
	ids              atomic.Uint32

	mu    sync.Mutex // guards conn and mechs
	conn  *dovecotClientConn
	mechs []DovecotMech
	// closed is set by Close: no more dialling.
	closed bool
}

// DovecotError is a refusal from the Dovecot server: a FAIL reply, or an
// OK reply that must be treated as one because it carries nologin or proxy
// (auth_protocol, "OK Does Not Mean Access Granted"). It wraps
// ErrTemporary for temporary failures, ErrMechanism for malformed
// exchanges (code=invalid_base64) and ErrBadPassword otherwise.
type DovecotError struct {
	// User is the user name the server reported (user=), if any.
	User string
	// Reason is text meant for the remote user instead of the standard
	// "authentication failed" (reason=).
	Reason string
	// Code is the failure code (code=): "temp_fail", "authz_fail",
	// "user_disabled", "pass_expired", "invalid_base64", or empty.
	Code string
	// Temporary: the server could not check the credentials (code=
	// temp_fail, or the older "temp" flag).
	Temporary bool
	// Fields are all the reply's parameters, unescaped.
	Fields map[string]string
}

func (e *DovecotError) Error() string {
	var b strings.Builder
	b.WriteString("auth: dovecot refused authentication")
	if e.User != "" {
		fmt.Fprintf(&b, " of %q", e.User)
	}
	if e.Code != "" {
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	return b.String()
}

func (e *DovecotError) Unwrap() error {
	switch {
	case e.Temporary:
		return ErrTemporary
	case e.Code == "invalid_base64":
		return ErrMechanism
	}
	return ErrBadPassword
}

// DialDovecot connects to a Dovecot auth server ("unix" and a socket path,
// or "tcp" and host:port for an inet_listener) and completes the
// handshake, so that Mechanisms is known. opts may be nil.
func DialDovecot(ctx context.Context, network, address string, opts *DovecotClientOptions) (*DovecotClient, error) {
	c := &DovecotClient{network: network, address: address}
	if opts != nil {
		c.opts = *opts
	}
	if c.opts.Timeout <= 0 {
		c.opts.Timeout = 10 * time.Second
	}
	if c.opts.Service == "" {
		c.opts.Service = "smtp"
	}
	if c.opts.Logger == nil {
		c.opts.Logger = slog.Default()
	}
	if _, err := c.connection(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes the connection. Exchanges in progress fail with
// ErrTemporary.
func (c *DovecotClient) Close() error {
	c.mu.Lock()
	c.closed = true
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		conn.shut(errors.New("client closed"))
	}
	return nil
}

// Mechanisms returns the names of the mechanisms the server offers to users
// as of the last handshake, the ones not flagged private, filtered by
// their flags as Postfix filters them with smtpd_sasl_security_options.
func (c *DovecotClient) Mechanisms(opts SecurityOptions) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.mechs {
		if !m.Private() && opts.Allows(m.MechFlags()) {
			out = append(out, m.Name)
		}
	}
	return out
}

// DovecotMechanisms returns every mechanism of the last handshake with its
// flags, private ones included.
func (c *DovecotClient) DovecotMechanisms() []DovecotMech {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]DovecotMech, len(c.mechs))
	for i, m := range c.mechs {
		out[i] = DovecotMech{Name: m.Name, Flags: slices.Clone(m.Flags)}
	}
	return out
}

// NewMech starts an exchange of the named mechanism; the connection
// details sent come from the ClientInfo of the context given to the first
// Next (WithClientInfo), as an SMTP server sets it. It makes the client a
// DovecotBackend.
func (c *DovecotClient) NewMech(name string) (ServerMech, error) {
	return c.Start(name, DovecotRequest{})
}

// StartMech is Start for the DovecotMechStarter interface.
func (c *DovecotClient) StartMech(ctx context.Context, mech string, req *DovecotRequest) (ServerMech, error) {
	var r DovecotRequest
	if req != nil {
		r = *req
	}
	return c.Start(mech, r)
}

// Start prepares an exchange of mechanism mech for a user connected as req
// describes. Nothing is sent until the first Next, which carries the
// client's initial response; fields of req.ClientInfo left zero are taken
// from the ClientInfo of that Next's context, and an empty service from
// the options. The mechanism must be one the server announced, private
// ones included (ErrMechanism otherwise).
func (c *DovecotClient) Start(mech string, req DovecotRequest) (*DovecotExchange, error) {
	c.mu.Lock()
	name := ""
	for _, m := range c.mechs {
		if strings.EqualFold(m.Name, mech) {
			name = m.Name
			break
		}
	}
	c.mu.Unlock()
	if name == "" {
		return nil, fmt.Errorf("auth: dovecot at %s does not offer mechanism %q: %w", c.address, mech, ErrMechanism)
	}
	return &DovecotExchange{c: c, mech: name, req: req}, nil
}

// Verify checks a user name and password with the PLAIN mechanism, as
// IMAP LOGIN or POP3 USER/PASS need, and returns the user name the server
// reports (it may canonicalize it). Failures are *DovecotError.
func (c *DovecotClient) Verify(ctx context.Context, req DovecotRequest, user, password string) (string, error) {
	x, err := c.Start("PLAIN", req)
	if err != nil {
		return "", err
	}
	resp := make([]byte, 0, 2+len(user)+len(password))
	resp = append(resp, 0)
	resp = append(resp, user...)
	resp = append(resp, 0)
	resp = append(resp, password...)
	_, done, err := x.Next(ctx, resp)
	if err != nil {
		return "", err
	}
	if !done {
		x.Cancel()
		return "", fmt.Errorf("auth: dovecot at %s: PLAIN asked for more than one response: %w", c.address, ErrMechanism)
	}
	return x.User(), nil
}

// connection returns the live connection, dialling a new one when there is
// none or the last one was lost.
func (c *DovecotClient) connection(ctx context.Context) (*dovecotClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("auth: dovecot client for %s is closed: %w", c.address, ErrTemporary)
	}
	if c.conn != nil && !c.conn.isDead() {
		return c.conn, nil
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	c.mechs = conn.mechs
	return conn, nil
}

func (c *DovecotClient) dial(ctx context.Context) (*dovecotClientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return nil, fmt.Errorf("auth: connect to dovecot auth socket %s: %w: %w", c.address, ErrTemporary, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	conn, err := newDovecotClientConn(nc, c.opts.Timeout)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("auth: handshake with dovecot at %s: %w: %w", c.address, ErrTemporary, err)
	}
	nc.SetDeadline(time.Time{})
	go conn.readLoop(c.opts.Logger.With("dovecot", c.address))
	return conn, nil
}

// dovecotClientConn is one connection to the server.
type dovecotClientConn struct {
	nc      net.Conn
	r       *bufio.Reader
	mechs   []DovecotMech
	timeout time.Duration // for writes

	wmu sync.Mutex
	w   *bufio.Writer

	mu      sync.Mutex
	pending map[uint32]chan dovecotReply
	dead    chan struct{}
	err     error
}

// dovecotReply is a server reply to one request: its command (CONT, OK,
// FAIL) and the fields after the id, unparsed.
type dovecotReply struct {
	cmd  string
	args []string
}

// newDovecotClientConn performs the handshake (Postfix's
// xsasl_dovecot_server_connect is the model): VERSION and CPID out, then
// the server's lines up to DONE.
func newDovecotClientConn(nc net.Conn, timeout time.Duration) (*dovecotClientConn, error) {
	conn := &dovecotClientConn{
		nc:      nc,
		timeout: timeout,
		r:       bufio.NewReaderSize(nc, 4096),
		w:       bufio.NewWriter(nc),
		pending: map[uint32]chan dovecotReply{},
		dead:    make(chan struct{}),
	}
	fmt.Fprintf(conn.w, "VERSION\t%d\t%d\nCPID\t%d\n", dovecotMajor, dovecotMinor, os.Getpid())
	if err := conn.w.Flush(); err != nil {
		return nil, err
	}
	mechs, err := readDovecotHandshake(conn.r)
	if err != nil {
		return nil, err
	}
	conn.mechs = mechs
	return conn, nil
}

// readDovecotHandshake reads the server's handshake up to DONE and returns
// the mechanisms it announced.
func readDovecotHandshake(r *bufio.Reader) ([]DovecotMech, error) {
	var mechs []DovecotMech
	gotVersion := false
	for {
		line, err := readDovecotLine(r)
		if err != nil {
			return nil, err
		}
		f := strings.Split(line, "\t")
		switch f[0] {
		case "VERSION":
			if len(f) < 3 {
				return nil, fmt.Errorf("malformed VERSION line %q", dovecotSanitize(line))
			}
			if f[1] != strconv.Itoa(dovecotMajor) {
				return nil, fmt.Errorf("server speaks protocol version %s.%s, want %d.x", dovecotSanitize(f[1]), dovecotSanitize(f[2]), dovecotMajor)
			}
			gotVersion = true
		case "MECH":
			if len(f) < 2 || f[1] == "" {
				return nil, fmt.Errorf("malformed MECH line %q", dovecotSanitize(line))
			}
			m := DovecotMech{Name: strings.ToUpper(dovecotUnescape(f[1]))}
			for _, fl := range f[2:] {
				m.Flags = append(m.Flags, strings.ToLower(dovecotUnescape(fl)))
			}
			mechs = append(mechs, m)
		case "SPID":
			// Dovecot's master and userdb sockets send VERSION and
			// SPID and then nothing: a SPID before any MECH line
			// means the wrong socket (the same test as Postfix's).
			if len(mechs) == 0 {
				return nil, errors.New("no MECH lines before SPID: this is Dovecot's auth-master or auth-userdb socket, not an auth-client socket")
			}
		case "DONE":
			if !gotVersion {
				return nil, errors.New("handshake ended without VERSION")
			}
			return mechs, nil
		default:
			// CUID, COOKIE, and anything a later version adds: not
			// needed by a client that only authenticates.
		}
	}
}

func (conn *dovecotClientConn) isDead() bool {
	select {
	case <-conn.dead:
		return true
	default:
		return false
	}
}

// shut marks the connection lost and wakes every waiting exchange.
func (conn *dovecotClientConn) shut(err error) {
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if conn.err != nil {
		return
	}
	conn.err = err
	close(conn.dead)
	conn.nc.Close()
}

func (conn *dovecotClientConn) lostError() error {
	conn.mu.Lock()
	defer conn.mu.Unlock()
	return conn.err
}

// readLoop hands each reply to the exchange waiting for its id. Replies for
// ids nobody waits for (cancelled or timed out) are dropped, as Postfix
// does.
func (conn *dovecotClientConn) readLoop(log *slog.Logger) {
	for {
		line, err := readDovecotLine(conn.r)
		if err != nil {
			if conn.lostError() == nil { // not closed by us
				log.Warn("dovecot auth: connection lost", "err", err)
			}
			conn.shut(fmt.Errorf("connection lost: %w", err))
			return
		}
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "OK", "FAIL", "CONT":
		default:
			continue
		}
		id, ok := parseDovecotID(f[1])
		if !ok {
			continue
		}
		conn.mu.Lock()
		ch := conn.pending[id]
		delete(conn.pending, id)
		conn.mu.Unlock()
		if ch != nil {
			ch <- dovecotReply{cmd: f[0], args: f[2:]}
		}
	}
}

// send writes one request line and registers the id for its reply.
func (conn *dovecotClientConn) send(id uint32, line string, ch chan dovecotReply) error {
	conn.mu.Lock()
	if conn.err != nil {
		conn.mu.Unlock()
		return conn.err
	}
	if ch != nil {
		conn.pending[id] = ch
	}
	conn.mu.Unlock()
	conn.wmu.Lock()
	defer conn.wmu.Unlock()
	conn.nc.SetWriteDeadline(time.Now().Add(conn.timeout))
	conn.w.WriteString(line)
	if err := conn.w.Flush(); err != nil {
		conn.shut(fmt.Errorf("write: %w", err))
		return err
	}
	return nil
}

func (conn *dovecotClientConn) forget(id uint32) {
	conn.mu.Lock()
	delete(conn.pending, id)
	conn.mu.Unlock()
}

// DovecotExchange is one SASL exchange run by a Dovecot server. It is a
// ServerMech: call Next with each of the user's responses and relay each
// challenge, until done or an error.
type DovecotExchange struct {
	c    *DovecotClient
	mech string
	req  DovecotRequest

	conn     *dovecotClientConn
	id       uint32
	started  bool
	finished bool
	user     string
	fields   map[string]string
	replies  chan dovecotReply
}

// Next sends the user's response (the initial response on the first call,
// nil when the user sent none) and returns the server's challenge, or done
// when the server accepted the user (with the server's additional data, if
// the mechanism has any, as challenge). A refusal is a *DovecotError; a lost
// connection or a timeout wraps ErrTemporary. Next must not be called
// after done or an error.
func (x *DovecotExchange) Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error) {
	if x.finished {
		return nil, false, fmt.Errorf("auth: dovecot exchange already finished: %w", ErrMechanism)
	}
	ctx, cancel := context.WithTimeout(ctx, x.c.opts.Timeout)
	defer cancel()
	if !x.started {
		x.fillRequest(ctx)
		err = x.sendAuth(ctx, response)
		x.started = true
	} else {
		var b strings.Builder
		b.Grow(16 + base64.StdEncoding.EncodedLen(len(response)))
		b.WriteString("CONT\t")
		b.WriteString(strconv.FormatUint(uint64(x.id), 10))
		b.WriteByte('\t')
		b.WriteString(base64.StdEncoding.EncodeToString(response))
		b.WriteByte('\n')
		err = x.conn.send(x.id, b.String(), x.replies)
	}
	if err != nil {
		x.finished = true
		if errors.Is(err, ErrTemporary) { // from dialling: says it all
			return nil, false, err
		}
		return nil, false, fmt.Errorf("auth: dovecot at %s: send %s request: %w: %w", x.c.address, x.mech, ErrTemporary, err)
	}
	var rep dovecotReply
	select {
	case rep = <-x.replies:
	case <-x.conn.dead:
		// The reply may have arrived just before the connection went.
		select {
		case rep = <-x.replies:
		default:
			x.finished = true
			return nil, false, fmt.Errorf("auth: dovecot at %s: %w: %w", x.c.address, ErrTemporary, x.conn.lostError())
		}
	case <-ctx.Done():
		x.Cancel()
		return nil, false, fmt.Errorf("auth: dovecot at %s: waiting for reply: %w: %w", x.c.address, ErrTemporary, ctx.Err())
	}
	return x.handleReply(rep)
}

// fillRequest completes the request's connection details from the
// context's ClientInfo and the options.
func (x *DovecotExchange) fillRequest(ctx context.Context) {
	r := &x.req
	if info, ok := ClientInfoFrom(ctx); ok {
		if r.Service == "" {
			r.Service = info.Service
		}
		if !r.LocalAddr.IsValid() {
			r.LocalAddr = info.LocalAddr
		}
		if !r.RemoteAddr.IsValid() {
			r.RemoteAddr = info.RemoteAddr
		}
		if r.Session == "" {
			r.Session = info.Session
		}
		r.Secured = r.Secured || info.Secured
	}
	if r.Service == "" {
		r.Service = x.c.opts.Service
	}
}

// sendAuth sends the AUTH line, dialling again once if the connection was
// lost (Postfix retries the same way).
func (x *DovecotExchange) sendAuth(ctx context.Context, resp []byte) error {
	x.replies = make(chan dovecotReply, 1)
	var err error
	for try := 0; try < 2; try++ {
		x.conn, err = x.c.connection(ctx)
		if err != nil {
			return err
		}
		x.id = x.c.ids.Add(1)
		if x.id == 0 { // wrapped: 0 is not a valid id
			x.id = x.c.ids.Add(1)
		}
		if err = x.conn.send(x.id, x.authLine(resp), x.replies); err == nil {
			return nil
		}
	}
	return err
}

// authLine formats the AUTH request. resp= comes last, as the protocol
// requires.
func (x *DovecotExchange) authLine(resp []byte) string {
	var b strings.Builder
	b.WriteString("AUTH\t")
	b.WriteString(strconv.FormatUint(uint64(x.id), 10))
	b.WriteByte('\t')
	b.WriteString(x.mech)
	r := &x.req
	param := func(name, value string) {
		b.WriteByte('\t')
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(dovecotEscape(value))
	}
	flag := func(name string) {
		b.WriteByte('\t')
		b.WriteString(name)
	}
	param("service", r.Service)
	if a := r.LocalAddr; a.IsValid() {
		param("lip", a.Addr().String())
		if a.Port() != 0 {
			param("lport", strconv.Itoa(int(a.Port())))
		}
	}
	if a := r.RemoteAddr; a.IsValid() {
		param("rip", a.Addr().String())
		if a.Port() != 0 {
			param("rport", strconv.Itoa(int(a.Port())))
		}
	}
	if r.Session != "" {
		param("session", r.Session)
	}
	if r.Secured {
		flag("secured")
	}
	if r.ValidClientCert {
		flag("valid-client-cert")
	}
	if r.NoPenalty {
		flag("no-penalty")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Params)) {
		switch k {
		case "service", "lip", "rip", "lport", "rport", "session", "secured", "valid-client-cert", "no-penalty", "resp":
			continue
		}
		if k == "" || strings.ContainsAny(k, "=\t\n\r\x01") {
			continue
		}
		if v := r.Params[k]; v == "" {
			flag(k)
		} else {
			param(k, v)
		}
	}
	if resp != nil {
		b.WriteString("\tresp=")
		if len(resp) == 0 {
			// "=" is the empty initial response; an empty resp=
			// would mean none.
			b.WriteByte('=')
		} else {
			b.WriteString(base64.StdEncoding.EncodeToString(resp))
		}
	}
	b.WriteByte('\n')
	return b.String()
}

// handleReply turns a CONT, OK or FAIL into Next's results.
func (x *DovecotExchange) handleReply(rep dovecotReply) ([]byte, bool, error) {
	switch rep.cmd {
	case "CONT":
		data := ""
		if len(rep.args) > 0 {
			data = rep.args[0]
		}
		challenge, err := decodeDovecotBase64(data)
		if err != nil {
			x.Cancel()
			return nil, false, fmt.Errorf("auth: dovecot at %s sent a challenge that is not base64: %w", x.c.address, ErrTemporary)
		}
		return challenge, false, nil
	case "OK":
		x.finished = true
		x.parseFields(rep.args)
		// auth_protocol: an OK with nologin or proxy is a refusal.
		_, nologin := x.fields["nologin"]
		_, proxy := x.fields["proxy"]
		if nologin || proxy {
			return nil, false, &DovecotError{User: x.user, Reason: x.fields["reason"], Code: x.fields["code"], Fields: x.fields}
		}
		if x.user == "" {
			// Postfix refuses such a reply too ("missing Dovecot
			// server OK username field").
			return nil, false, fmt.Errorf("auth: dovecot at %s accepted without naming the user: %w", x.c.address, ErrTemporary)
		}
		// Additional data with success (SCRAM's server-final-message)
		// comes as resp=.
		var final []byte
		if r, ok := x.fields["resp"]; ok {
			var err error
			if final, err = decodeDovecotBase64(r); err != nil {
				return nil, false, fmt.Errorf("auth: dovecot at %s sent a final response that is not base64: %w", x.c.address, ErrTemporary)
			}
		}
		return final, true, nil
	default: // FAIL
		x.finished = true
		x.parseFields(rep.args)
		_, temp := x.fields["temp"]
		e := &DovecotError{User: x.user, Reason: x.fields["reason"], Code: x.fields["code"], Fields: x.fields}
		e.Temporary = temp || e.Code == "temp_fail"
		return nil, false, e
	}
}

func (x *DovecotExchange) parseFields(args []string) {
	x.fields = make(map[string]string, len(args))
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		x.fields[k] = dovecotUnescape(v)
	}
	x.user = x.fields["user"]
}

// User is the user name the server reported: the authenticated user after
// done, or the user a refusal named.
func (x *DovecotExchange) User() string { return x.user }

// Fields are the parameters of the final OK or FAIL reply, unescaped
// (user, original_user, reason, code, and the passdb's extra fields).
func (x *DovecotExchange) Fields() map[string]string { return x.fields }

// Cancel abandons an exchange in progress (CANCEL); the server sends no
// reply. It does nothing once the exchange is finished.
func (x *DovecotExchange) Cancel() {
	if !x.started || x.finished {
		x.finished = true
		return
	}
	x.finished = true
	x.conn.forget(x.id)
	// Best effort: on a lost connection there is nothing to cancel.
	x.conn.send(x.id, "CANCEL\t"+strconv.FormatUint(uint64(x.id), 10)+"\n", nil)
}

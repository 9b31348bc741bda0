package auth

// The server side of Dovecot's authentication protocol ("auth-client"
// protocol, version 1.2 as spoken by Dovecot 2.3), so that Postfix with
// smtpd_sasl_type = dovecot, Exim's dovecot authenticator or any other
// Dovecot SASL client authenticates against postkit.
//
// The protocol is line based, fields are separated by TAB and escaped with
// Dovecot's "tab-escaping" (Dovecot's doc/auth-protocol and
// developers/design/auth_protocol): the server announces itself with
// VERSION, MECH lines, SPID, CUID, COOKIE and DONE; the client sends
// VERSION and CPID, then any number of concurrent AUTH requests, each named
// by a client-chosen id, continued with CONT and abandoned with CANCEL. The
// server answers each step with CONT (a challenge), OK or FAIL.
//
// Where the specification is loose, this file follows what Dovecot 2.3.19
// does (checked against a running Dovecot by the tests): the handshake
// order, which client errors close the connection, which ones get a FAIL
// reply, and the exact FAIL parameters.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Protocol version spoken both ways. Only the major version must match
// (auth_protocol: "Minor version can be ignored"); 2 is what Dovecot 2.3
// announces.
const (
	dovecotMajor = 1
	dovecotMinor = 2
)

// dovecotMaxLine is the longest line either side accepts, newline excluded.
// Dovecot's AUTH_CLIENT_MAX_LINE_LENGTH is 16384; a longer line makes
// Dovecot drop the connection, and so do we.
const dovecotMaxLine = 16384

// DovecotBackend is what a DovecotServer authenticates against: the
// mechanisms to announce and, per AUTH request, the server side of one SASL
// exchange. An *Authenticator is a DovecotBackend, and so is a
// *DovecotClient (which makes the server a relay to a real Dovecot).
//
// The context of each exchange carries the request's ClientInfo
// (ClientInfoFrom): service, addresses, TLS state and session, from the
// AUTH line's service, lip, lport, rip, rport, secured and session.
type DovecotBackend interface {
	// Mechanisms are the SASL mechanism names allowed by opts, upper
	// case ("PLAIN", "LOGIN", "CRAM-MD5"). The server announces the ones
	// the zero SecurityOptions allow: the client (Postfix, with
	// smtpd_sasl_security_options) filters them by their flags.
	Mechanisms(opts SecurityOptions) []string
	// NewMech starts one exchange of the named mechanism.
	NewMech(name string) (ServerMech, error)
}

// The package's own backends.
var (
	_ DovecotBackend     = (*Authenticator)(nil)
	_ DovecotBackend     = (*DovecotClient)(nil)
	_ DovecotMechStarter = (*DovecotClient)(nil)
	_ DovecotMechLister  = (*DovecotClient)(nil)
)

// DovecotMechStarter is an optional capability of a DovecotBackend that
// wants the whole AUTH request when an exchange starts, with the
// parameters that have no place in ClientInfo (valid-client-cert,
// no-penalty, and any other). The server calls it instead of NewMech; a
// DovecotClient implements it to relay requests unchanged.
type DovecotMechStarter interface {
	StartMech(ctx context.Context, mech string, req *DovecotRequest) (ServerMech, error)
}

// DovecotMechLister is an optional capability of a DovecotBackend that
// names its mechanisms together with their flags, private ones included.
// Without it the server announces Mechanisms with the flags of
// MechanismFlags, or of Dovecot's table for the mechanisms postkit does not
// implement (DIGEST-MD5, ANONYMOUS, APOP...).
type DovecotMechLister interface {
	DovecotMechanisms() []DovecotMech
}

// DovecotMech is a mechanism as announced by a MECH line.
type DovecotMech struct {
	// Name is the SASL mechanism name, upper case.
	Name string
	// Flags are the security properties, in the protocol's words:
	// "anonymous", "plaintext", "dictionary", "active",
	// "forward-secrecy", "mutual-auth", "private" (not to be offered to
	// users: APOP), "channel-binding". Postfix filters the mechanisms it
	// offers with them (smtpd_sasl_security_options = noplaintext,
	// noanonymous ...).
	Flags []string
}

// Private reports whether the mechanism is announced as not to be offered
// to users.
func (m DovecotMech) Private() bool { return slices.Contains(m.Flags, "private") }

// MechFlags returns the flags that SecurityOptions judge.
func (m DovecotMech) MechFlags() MechFlags {
	var f MechFlags
	for _, w := range m.Flags {
		switch w {
		case "plaintext":
			f |= MechPlaintext
		case "dictionary":
			f |= MechDictionary
		case "active":
			f |= MechActive
		case "anonymous":
			f |= MechAnonymous
		case "forward-secrecy":
			f |= MechForwardSecrecy
		case "mutual-auth":
			f |= MechMutualAuth
		}
	}
	return f
}

// dovecotMechFlags are the flags Dovecot 2.3.19 announces for mechanisms
// postkit does not implement (read from its MECH lines), for backends
// that offer them. A mechanism in neither table is announced with none.
var dovecotMechFlags = map[string][]string{
	"DIGEST-MD5":  {"dictionary", "active", "mutual-auth"},
	"SCRAM-SHA-1": {"mutual-auth"},
	"ANONYMOUS":   {"anonymous"},
	"APOP":        {"private", "dictionary", "active"},
	"OTP":         {"dictionary", "active", "mutual-auth"},
	"NTLM":        {"dictionary", "active"},
}

// DovecotRequest is what an AUTH request says about the user's connection
// (auth_protocol, "AUTH and USER common parameters" and "AUTH-only
// parameters"). The client side sends it; the server side passes it to a
// DovecotMechStarter, and its ClientInfo to every backend.
type DovecotRequest struct {
	// ClientInfo: Service is the protocol asking ("smtp", "imap"; a
	// DovecotClient sends the one of the context's ClientInfo, or its
	// options', when empty); LocalAddr is lip and lport, RemoteAddr rip
	// and rport (a zero port is not sent; Postfix sends an empty lip and
	// no ports); Secured is the secured flag (TLS, or a local
	// connection); Session is session.
	ClientInfo
	// ValidClientCert: the user presented a valid TLS client certificate.
	ValidClientCert bool
	// NoPenalty asks the server not to count this request in its
	// failed-login penalty (Dovecot's auth_penalty).
	NoPenalty bool
	// Params holds every other optional parameter, unescaped: a name
	// with its value, or with "" for a flag. On the server side it holds
	// all the request's parameters (the ones above too), except resp.
	Params map[string]string
}

// DovecotServer serves Dovecot's authentication protocol on one or more
// listeners. Set Backend, then call Serve for each listener; the zero value
// of every other field is a sensible default.
type DovecotServer struct {
	// Backend authenticates; it must be set before Serve.
	Backend DovecotBackend
	// Logger receives protocol errors (warnings) and failed requests
	// (debug); nil means slog.Default().
	Logger *slog.Logger
	// MaxConnections bounds the connections served at once over all
	// listeners; further clients wait in the listen backlog. Zero means
	// 1000 (Dovecot's default_client_limit).
	MaxConnections int
	// MaxRequests bounds the unfinished requests of one connection; an
	// AUTH beyond it gets a temporary failure. Zero means 100.
	MaxRequests int
	// RequestTimeout is how long a request may take from AUTH to OK or
	// FAIL; after it, the request is forgotten and a late CONT is told
	// "Authentication request timed out". Zero means 150 seconds, as
	// Dovecot's MASTER_AUTH_SERVER_TIMEOUT_SECS.
	RequestTimeout time.Duration
	// WriteTimeout bounds writing a reply to a client that does not read;
	// the connection is closed when it expires. Zero means 30 seconds.
	WriteTimeout time.Duration

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*dovecotServerConn]struct{}
	sem       chan struct{}
	cuid      atomic.Uint32
	wg        sync.WaitGroup
}

// ServeDovecotAuth serves Dovecot's authentication protocol on ln with the
// default settings until ctx is cancelled. See DovecotServer.Serve.
func ServeDovecotAuth(ctx context.Context, ln net.Listener, backend DovecotBackend) error {
	s := &DovecotServer{Backend: backend}
	return s.Serve(ctx, ln)
}

// ListenDovecotUnix listens on a UNIX socket at path for a DovecotServer and
// gives the socket file the permissions perm. Postfix's smtpd connects as
// user postfix, so the socket must be writable by it: 0666, or 0660 with
// group postfix (Dovecot's unix_listener ... { mode = 0660 group = postfix
// }). A socket file left behind by a process that is gone is replaced; a
// path where another server still answers is an error. Closing the listener
// removes the file.
func ListenDovecotUnix(path string, perm fs.FileMode) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("auth: listen on %s: exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("auth: listen on %s: a server is already answering there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("auth: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("auth: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, perm); err != nil {
		ln.Close()
		return nil, fmt.Errorf("auth: set permissions of %s: %w", path, err)
	}
	return ln, nil
}

// Serve accepts connections on ln and serves each until the client leaves,
// ctx is cancelled or Close is called. It closes ln before returning; it
// returns nil after ctx is cancelled or Close is called, and the accept
// error otherwise. Serve may be called for several listeners at once.
func (s *DovecotServer) Serve(ctx context.Context, ln net.Listener) error {
	if s.Backend == nil {
		return errors.New("auth: DovecotServer.Serve: no Backend")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*dovecotServerConn]struct{}{}
		n := s.MaxConnections
		if n <= 0 {
			n = 1000
		}
		s.sem = make(chan struct{}, n)
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		nc, err := ln.Accept()
		if err != nil {
			<-s.sem
			if ctx.Err() != nil || s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or a passing fault: wait
				// and retry, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("auth: dovecot server: accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		c := s.newConn(ctx, nc)
		if c == nil {
			<-s.sem
			return nil
		}
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem }()
			c.serve()
		}()
	}
}

// Close stops every Serve, closes all connections and waits for their
// goroutines. Exchanges in progress see their context cancelled; Close
// waits for them to return.
func (s *DovecotServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *DovecotServer) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *DovecotServer) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *DovecotServer) newConn(ctx context.Context, nc net.Conn) *dovecotServerConn {
	ctx, cancel := context.WithCancel(ctx)
	cuid := s.cuid.Add(1)
	log := s.logger().With("cuid", cuid)
	if ra := nc.RemoteAddr(); ra != nil && ra.Network() != "unix" {
		log = log.With("client", ra.String())
	}
	c := &dovecotServerConn{
		srv:    s,
		nc:     nc,
		ctx:    ctx,
		cancel: cancel,
		cuid:   cuid,
		w:      bufio.NewWriter(nc),
		reqs:   map[uint32]*dovecotServerReq{},
		log:    log,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		cancel()
		return nil
	}
	s.conns[c] = struct{}{}
	// Added under s.mu, so that Close, which sets closed under it
	// before waiting, never waits while a connection is being added.
	s.wg.Add(1)
	return c
}

// dovecotServerConn is one client connection.
type dovecotServerConn struct {
	srv    *DovecotServer
	nc     net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	cuid   uint32
	log    *slog.Logger
	mechs  []DovecotMech

	wmu sync.Mutex // guards w
	w   *bufio.Writer

	mu   sync.Mutex // guards reqs
	reqs map[uint32]*dovecotServerReq
	wg   sync.WaitGroup // steps in progress
}

// dovecotServerReq is one AUTH request between AUTH and its final reply.
type dovecotServerReq struct {
	id     uint32
	mech   ServerMech
	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer
	// waiting is true while the server has sent CONT and expects the
	// client's CONT; a CONT at any other time is a protocol error.
	waiting bool
}

func (c *dovecotServerConn) close() {
	c.cancel()
	c.nc.Close()
}

func (c *dovecotServerConn) serve() {
	defer func() {
		c.close()
		c.mu.Lock()
		for id, r := range c.reqs {
			r.cancel()
			r.timer.Stop()
			delete(c.reqs, id)
		}
		c.mu.Unlock()
		c.wg.Wait()
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
	}()
	stop := context.AfterFunc(c.ctx, func() { c.nc.Close() })
	defer stop()

	c.mechs = dovecotBackendMechs(c.srv.Backend)
	if err := c.sendHandshake(); err != nil {
		return
	}
	r := bufio.NewReaderSize(c.nc, 4096)
	// Handshake: VERSION first, then CPID (Dovecot's
	// auth_client_input closes the connection on anything else).
	gotVersion := false
	for {
		line, err := readDovecotLine(r)
		if err != nil {
			c.readError(err)
			return
		}
		f := strings.Split(line, "\t")
		if !gotVersion {
			if f[0] != "VERSION" || len(f) < 2 || f[1] != strconv.Itoa(dovecotMajor) {
				c.log.Warn("dovecot auth: client speaks an incompatible protocol version", "line", dovecotSanitize(line))
				return
			}
			gotVersion = true
			continue
		}
		if f[0] != "CPID" || len(f) < 2 {
			c.log.Warn("dovecot auth: unexpected handshake line from client", "line", dovecotSanitize(line))
			return
		}
		// The CPID only matters for Dovecot's login processes (master
		// REQUEST), which postkit does not serve: ignore its value,
		// as Dovecot does on auth-client sockets.
		break
	}
	for {
		line, err := readDovecotLine(r)
		if err != nil {
			c.readError(err)
			return
		}
		if err := c.handle(line); err != nil {
			c.log.Warn("dovecot auth: closing connection", "err", err)
			return
		}
	}
}

func (c *dovecotServerConn) readError(err error) {
	if errors.Is(err, errDovecotLineTooLong) {
		c.log.Warn("dovecot auth: client sent a line longer than the limit", "limit", dovecotMaxLine)
	}
}

// dovecotBackendMechs returns the mechanisms a backend announces, with flags.
func dovecotBackendMechs(b DovecotBackend) []DovecotMech {
	if l, ok := b.(DovecotMechLister); ok {
		return l.DovecotMechanisms()
	}
	names := b.Mechanisms(SecurityOptions{})
	out := make([]DovecotMech, 0, len(names))
	for _, n := range names {
		n = strings.ToUpper(n)
		m := DovecotMech{Name: n, Flags: dovecotMechFlags[n]}
		if f, ok := MechanismFlags(n); ok {
			m.Flags = f.Names()
		}
		out = append(out, m)
	}
	return out
}

// sendHandshake announces the server in Dovecot 2.3's order: VERSION, the
// MECH lines, SPID, CUID, COOKIE, DONE. The order matters: Postfix takes a
// SPID before any MECH line as the sign that it reached Dovecot's master
// socket instead of the client socket, and gives up.
func (c *dovecotServerConn) sendHandshake() error {
	var b strings.Builder
	fmt.Fprintf(&b, "VERSION\t%d\t%d\n", dovecotMajor, dovecotMinor)
	for _, m := range c.mechs {
		b.WriteString("MECH\t")
		b.WriteString(dovecotEscape(m.Name))
		for _, f := range m.Flags {
			b.WriteByte('\t')
			b.WriteString(dovecotEscape(f))
		}
		b.WriteByte('\n')
	}
	var cookie [16]byte
	rand.Read(cookie[:])
	fmt.Fprintf(&b, "SPID\t%d\nCUID\t%d\nCOOKIE\t%s\nDONE\n", os.Getpid(), c.cuid, hex.EncodeToString(cookie[:]))
	return c.write(b.String())
}

// write sends one or more complete lines.
func (c *dovecotServerConn) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	wt := c.srv.WriteTimeout
	if wt <= 0 {
		wt = 30 * time.Second
	}
	c.nc.SetWriteDeadline(time.Now().Add(wt))
	c.w.WriteString(s)
	if err := c.w.Flush(); err != nil {
		c.nc.Close()
		return err
	}
	return nil
}

// handle processes one request line. An error closes the connection: it is
// returned for the client errors Dovecot treats as bugs in the client
// (auth_request_handler_auth_begin and auth_client_handle_line).
func (c *dovecotServerConn) handle(line string) error {
	cmd, rest, _ := strings.Cut(line, "\t")
	switch cmd {
	case "AUTH":
		return c.handleAuth(rest)
	case "CONT":
		return c.handleCont(rest)
	case "CANCEL":
		id, ok := parseDovecotID(rest)
		if !ok {
			return fmt.Errorf("broken CANCEL %q", dovecotSanitize(line))
		}
		c.finish(id)
		return nil
	}
	return fmt.Errorf("unknown command %q", dovecotSanitize(cmd))
}

// parseDovecotID parses a request id: a decimal 32-bit number other than
// zero (Dovecot 2.3 refuses 0 and anything beyond 2^32-1).
func parseDovecotID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

func (c *dovecotServerConn) handleAuth(rest string) error {
	f := strings.Split(rest, "\t")
	if len(f) < 2 {
		return errors.New("broken AUTH request")
	}
	id, ok := parseDovecotID(f[0])
	if !ok {
		return errors.New("broken AUTH request")
	}
	mech := ""
	for _, m := range c.mechs {
		if strings.EqualFold(m.Name, f[1]) {
			mech = m.Name
			break
		}
	}
	if mech == "" {
		return fmt.Errorf("unsupported mechanism %q", dovecotSanitize(f[1]))
	}
	req := &DovecotRequest{Params: map[string]string{}}
	var (
		lip, rip     netip.Addr
		lport, rport uint64
	)
	var resp []byte
	haveResp := false
	for i := 2; i < len(f); i++ {
		name, value, _ := strings.Cut(f[i], "=")
		if name == "resp" {
			// resp must be the last parameter (auth_protocol), so
			// that tabs in data a client put there unfiltered cannot
			// add parameters; Dovecot drops a client that sends more.
			if i != len(f)-1 {
				return errors.New("AUTH parameters after resp")
			}
			haveResp = true
			if value == "" {
				// An empty resp= is taken as no initial response
				// (Dovecot accepts it from Exim); "=" is the empty
				// one.
				haveResp = false
				break
			}
			var err error
			if resp, err = decodeDovecotBase64(value); err != nil {
				return c.fail(id, "", "invalid_base64", "Invalid base64 data in initial response")
			}
			break
		}
		value = dovecotUnescape(value)
		req.Params[name] = value
		switch name {
		case "service":
			req.Service = value
		case "lip":
			lip, _ = netip.ParseAddr(value)
		case "rip":
			rip, _ = netip.ParseAddr(value)
		case "lport":
			lport, _ = strconv.ParseUint(value, 10, 16)
		case "rport":
			rport, _ = strconv.ParseUint(value, 10, 16)
		case "secured":
			req.Secured = true
		case "valid-client-cert":
			req.ValidClientCert = true
		case "no-penalty":
			req.NoPenalty = true
		case "session":
			req.Session = value
		}
	}
	if req.Service == "" {
		return errors.New("AUTH without service")
	}
	// An address with a port, or alone; a port without its address is
	// dropped.
	if lip.IsValid() {
		req.LocalAddr = netip.AddrPortFrom(lip.Unmap(), uint16(lport))
	}
	if rip.IsValid() {
		req.RemoteAddr = netip.AddrPortFrom(rip.Unmap(), uint16(rport))
	}
	if !haveResp {
		resp = nil
	} else if resp == nil {
		resp = []byte{}
	}

	c.mu.Lock()
	if _, dup := c.reqs[id]; dup {
		c.mu.Unlock()
		return fmt.Errorf("duplicate request id %d", id)
	}
	max := c.srv.MaxRequests
	if max <= 0 {
		max = 100
	}
	if len(c.reqs) >= max {
		c.mu.Unlock()
		return c.fail(id, "", "temp_fail", "Too many concurrent requests")
	}
	rctx, cancel := context.WithCancel(WithClientInfo(c.ctx, req.ClientInfo))
	r := &dovecotServerReq{id: id, ctx: rctx, cancel: cancel}
	timeout := c.srv.RequestTimeout
	if timeout <= 0 {
		timeout = 150 * time.Second
	}
	r.timer = time.AfterFunc(timeout, func() {
		c.log.Info("dovecot auth: request timed out", "id", id)
		c.finish(id)
	})
	c.reqs[id] = r
	c.mu.Unlock()

	c.wg.Go(func() {
		var (
			m   ServerMech
			err error
		)
		if st, ok := c.srv.Backend.(DovecotMechStarter); ok {
			m, err = st.StartMech(rctx, mech, req)
		} else {
			m, err = c.srv.Backend.NewMech(mech)
		}
		if err != nil {
			c.reply(r, nil, false, fmt.Errorf("start %s: %w", mech, err))
			return
		}
		r.mech = m
		c.step(r, resp)
	})
	return nil
}

func (c *dovecotServerConn) handleCont(rest string) error {
	idStr, data, ok := strings.Cut(rest, "\t")
	if !ok {
		return errors.New("broken CONT request")
	}
	id, ok := parseDovecotID(idStr)
	if !ok {
		return errors.New("broken CONT request")
	}
	c.mu.Lock()
	r := c.reqs[id]
	if r == nil {
		c.mu.Unlock()
		// Finished, cancelled, timed out, or never started: Dovecot
		// gives the same answer for all of them.
		return c.fail(id, "", "", "Authentication request timed out")
	}
	if !r.waiting {
		c.mu.Unlock()
		c.finish(id)
		return c.fail(id, "", "", "Unexpected continuation")
	}
	r.waiting = false
	c.mu.Unlock()
	resp, err := decodeDovecotBase64(data)
	if err != nil {
		c.finish(id)
		return c.fail(id, "", "invalid_base64", "Invalid base64 data in continued response")
	}
	c.wg.Go(func() { c.step(r, resp) })
	return nil
}

// step runs one step of an exchange and sends its reply.
func (c *dovecotServerConn) step(r *dovecotServerReq, resp []byte) {
	challenge, done, err := r.mech.Next(r.ctx, resp)
	c.reply(r, challenge, done, err)
}

// reply sends the outcome of a step, unless the request has been cancelled
// or has timed out in the meantime.
func (c *dovecotServerConn) reply(r *dovecotServerReq, challenge []byte, done bool, err error) {
	c.mu.Lock()
	if c.reqs[r.id] != r || r.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	if err == nil && !done {
		r.waiting = true
		c.mu.Unlock()
		var b strings.Builder
		b.Grow(16 + base64.StdEncoding.EncodedLen(len(challenge)))
		b.WriteString("CONT\t")
		b.WriteString(strconv.FormatUint(uint64(r.id), 10))
		b.WriteByte('\t')
		b.WriteString(base64.StdEncoding.EncodeToString(challenge))
		b.WriteByte('\n')
		c.write(b.String())
		return
	}
	delete(c.reqs, r.id)
	r.timer.Stop()
	c.mu.Unlock()
	defer r.cancel()

	user := ""
	if r.mech != nil {
		user = r.mech.User()
	}
	if err == nil {
		if user == "" {
			// Postfix refuses an OK without user= ("missing Dovecot
			// server OK username field").
			c.log.Error("dovecot auth: mechanism finished without a user name", "id", r.id)
			c.fail(r.id, "", "temp_fail", "")
			return
		}
		var b strings.Builder
		b.WriteString("OK\t")
		b.WriteString(strconv.FormatUint(uint64(r.id), 10))
		b.WriteString("\tuser=")
		b.WriteString(dovecotEscape(user))
		if len(challenge) > 0 {
			// Additional data with success (RFC 4422 3.6), e.g.
			// SCRAM's server-final-message: Dovecot sends it as
			// resp= on the OK line.
			b.WriteString("\tresp=")
			b.WriteString(base64.StdEncoding.EncodeToString(challenge))
		}
		b.WriteByte('\n')
		c.write(b.String())
		return
	}
	code, reason := "", ""
	var de *DovecotError
	switch {
	case errors.As(err, &de):
		// A failure relayed from another Dovecot-protocol server:
		// pass its reason and code on.
		code, reason = de.Code, de.Reason
		if de.Temporary && code == "" {
			code = "temp_fail"
		}
		if de.User != "" {
			user = de.User
		}
	case errors.Is(err, ErrBadPassword), errors.Is(err, ErrUnknownUser), errors.Is(err, ErrMechanism):
		// No reason: the client must not learn whether the user
		// exists (auth_protocol, FAIL reason=).
	default:
		// ErrTemporary, and anything the mechanism should have
		// wrapped but did not: Dovecot reports internal failures as
		// temporary.
		code = "temp_fail"
	}
	// Debug: the backend (Authenticator) logs its failures itself.
	c.log.Debug("dovecot auth: authentication failed", "id", r.id, "user", user, "err", err)
	c.fail(r.id, user, code, reason)
}

// fail sends a FAIL reply in Dovecot 2.3.19's field order: user, code,
// reason. It returns nil so that callers can return it from a handler.
func (c *dovecotServerConn) fail(id uint32, user, code, reason string) error {
	var b strings.Builder
	b.WriteString("FAIL\t")
	b.WriteString(strconv.FormatUint(uint64(id), 10))
	if user != "" {
		b.WriteString("\tuser=")
		b.WriteString(dovecotEscape(user))
	}
	if code != "" {
		b.WriteString("\tcode=")
		b.WriteString(dovecotEscape(code))
	}
	if reason != "" {
		b.WriteString("\treason=")
		b.WriteString(dovecotEscape(reason))
	}
	b.WriteByte('\n')
	c.write(b.String())
	return nil
}

// finish forgets a request and cancels its exchange.
func (c *dovecotServerConn) finish(id uint32) {
	c.mu.Lock()
	r := c.reqs[id]
	delete(c.reqs, id)
	c.mu.Unlock()
	if r != nil {
		r.timer.Stop()
		r.cancel()
	}
}

// decodeDovecotBase64 decodes a resp= or CONT payload. "=" alone is the
// empty string (Dovecot's decoder accepts it; Go's does not).
func decodeDovecotBase64(s string) ([]byte, error) {
	if s == "=" || s == "" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// The line codec, shared by server and client.

var errDovecotLineTooLong = errors.New("line too long")

// readDovecotLine reads one line without its LF (and without a CR before
// it), refusing lines longer than dovecotMaxLine.
func readDovecotLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if err == nil {
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) > dovecotMaxLine {
			return "", errDovecotLineTooLong
		}
		return string(line), nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	buf := append([]byte(nil), line...)
	for {
		line, err = r.ReadSlice('\n')
		buf = append(buf, line...)
		if len(buf) > dovecotMaxLine+2 {
			return "", errDovecotLineTooLong
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	if len(buf) > dovecotMaxLine {
		return "", errDovecotLineTooLong
	}
	return string(buf), nil
}

// dovecotEscape applies Dovecot's tab-escaping (str_append_tabescaped):
// \001 is the escape character, followed by '1' for itself, 't' for TAB,
// 'r' for CR, 'n' for LF and '0' for NUL (the last one from the v1.3
// protocol description; Dovecot 2.3 never has a NUL to escape).
func dovecotEscape(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r <= '\r' })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for j := i; j < len(s); j++ {
		switch ch := s[j]; ch {
		case 0:
			b.WriteString("\x010")
		case 1:
			b.WriteString("\x011")
		case '\t':
			b.WriteString("\x01t")
		case '\r':
			b.WriteString("\x01r")
		case '\n':
			b.WriteString("\x01n")
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// dovecotUnescape reverses dovecotEscape. After \001 any other character
// stands for itself, and a \001 at the end is dropped, as in Dovecot's
// str_tabunescape.
func dovecotUnescape(s string) string {
	i := strings.IndexByte(s, 1)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for j := i; j < len(s); j++ {
		ch := s[j]
		if ch != 1 {
			b.WriteByte(ch)
			continue
		}
		j++
		if j == len(s) {
			break
		}
		switch s[j] {
		case '0':
			b.WriteByte(0)
		case '1':
			b.WriteByte(1)
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		default:
			b.WriteByte(s[j])
		}
	}
	return b.String()
}

// dovecotSanitize shortens a client's line for a log message and hides
// anything after a resp= or in a CONT, which may carry a password.
func dovecotSanitize(s string) string {
	if i := strings.Index(s, "\tresp="); i >= 0 {
		s = s[:i] + "\tresp=<hidden>"
	}
	if strings.HasPrefix(s, "CONT\t") {
		if i := strings.IndexByte(s[5:], '\t'); i >= 0 {
			s = s[:5+i] + "\t<hidden>"
		}
	}
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

package smtpserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postkit-mail/postkit/restrictions"
)

// errClose ends a session after the reply that was already sent.
var errClose = errors.New("session closed")

// session is one client connection.
type session struct {
	srv  *Server
	cfg  *Config
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	ctx  context.Context
	stop context.CancelFunc

	stopReq atomic.Bool
	idle    atomic.Bool

	snap     restrictions.Snapshot
	namaddr  string // "NAME[ADDR]" for logs and replies
	tlsState *tls.ConnectionState
	// tlsCert is the server certificate the handshake chose, when known
	// (certRecorder).
	tlsCert *tls.Certificate
	esmtp   bool // the client used EHLO (PIPELINING offered)
	authed  bool
	// accessDenied is the client-stage rejection of the connect stage
	// with smtpd_delay_reject = no.
	accessDenied *restrictions.Reply
	xforward     map[string]string

	// The transaction.
	inMail   bool
	env      *Envelope
	msg      Message
	rcptSeen int // RCPT commands in this transaction, accepted or not
	bdat     *bdatState
	// stickySize is the last SIZE= given, kept until the transaction is
	// reset as Postfix keeps state->msg_size.
	stickySize int64

	errorCount int
	illegalSet bool
	counts     map[string]*[2]int // command -> {ok, total}
	lastCmd    string             // for "lost connection after CMD"
	dataBytes  int64
	limits     *ClientLimits // per-client rate limits from the Listener; nil: none
	lineBuf    []byte        // reused by readLine
	// readTimeout is the deadline of each read (timedIO).
	readTimeout time.Duration
	msgBuf      *bufio.Writer // reused for the message stream
}

func newSession(srv *Server, c net.Conn) *session {
	ctx, cancel := context.WithCancel(srv.ctx)
	s := &session{srv: srv, cfg: &srv.cfg, conn: c, ctx: ctx, stop: cancel,
		counts: map[string]*[2]int{}, lastCmd: "CONNECT", readTimeout: srv.cfg.Timeout}
	s.br = sessionReaders.Get().(*bufio.Reader)
	s.br.Reset(timedIO{s})
	// Replies are short; 1 KiB holds a pipelined group of them and
	// keeps an idle session small (BenchmarkIdleConnections).
	s.bw = sessionWriters.Get().(*bufio.Writer)
	s.bw.Reset(timedIO{s})
	return s
}

// sessionReaders and sessionWriters keep the connection buffers of ended
// sessions for new ones (releaseBuffers): a client that sends one message
// per connection would otherwise allocate them per message.
var (
	sessionReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	sessionWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1024) }}
)

// releaseBuffers hands the session's buffers back when run ends; nothing
// reads or writes the connection after that.
func (s *session) releaseBuffers() {
	s.releaseMsgBuf()
	if s.br != nil {
		s.br.Reset(nil)
		sessionReaders.Put(s.br)
		s.br = nil
	}
	if s.bw != nil {
		s.bw.Reset(nil)
		sessionWriters.Put(s.bw)
		s.bw = nil
	}
}

// timedIO is the session's one timeout mechanism: every Read and Write
// on the client connection gets its own deadline, as each read(2) and
// write(2) of Postfix's smtpd gets smtpd_timeout. A slow but steady
// client is never cut off in the middle of a long message; a stalled one
// is, after readTimeout (smtpd_timeout, or Config.DataIdleTimeout while
// message data is read). The session ends at the first timeout, so it
// never goes on with half-read input (../shared/docs/go-libraries.md
// §1.8). It reads and writes s.conn, the TLS layer once there is one.
type timedIO struct{ s *session }

func (t timedIO) Read(p []byte) (int, error) {
	s := t.s
	s.conn.SetReadDeadline(time.Now().Add(s.readTimeout))
	// A shutdown that came between the idle mark and this deadline
	// must still wake the session (requestStop).
	if s.idle.Load() && s.stopReq.Load() {
		s.conn.SetReadDeadline(time.Now())
	}
	return s.conn.Read(p)
}

func (t timedIO) Write(p []byte) (int, error) {
	s := t.s
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	return s.conn.Write(p)
}

// requestStop asks the session to end at the next command boundary; an
// idle session is woken up at once.
func (s *session) requestStop() {
	s.stopReq.Store(true)
	if s.idle.Load() {
		s.conn.SetReadDeadline(time.Now())
	}
}

// setupPeer fills the client part of the snapshot from the connection.
func (s *session) setupPeer() {
	if pc, ok := peerOf(s.conn); ok {
		s.limits = pc.Limits()
		s.limits.SetName(func() string { return s.namaddr })
	}
	ap := addrPortOf(s.conn.RemoteAddr())
	s.snap.ClientAddr = ap.Addr().Unmap()
	s.snap.ClientPort = int(ap.Port())
	lp := addrPortOf(s.conn.LocalAddr())
	s.snap.ServerAddr = lp.Addr().Unmap()
	s.snap.ServerPort = int(lp.Port())
	if !ap.IsValid() {
		// Not an Internet peer (a unix socket, as for LMTP): like
		// Postfix's smtpd_peer_not_inet, take it for a local client,
		// "localhost[127.0.0.1]", without asking DNS.
		s.snap.ClientAddr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		s.snap.ClientPort = 0
		s.snap.ClientName, s.snap.ReverseName = "localhost", "localhost"
		s.snap.ClientNameStatus, s.snap.ReverseNameStatus = restrictions.NameOK, restrictions.NameOK
		s.updateNamaddr()
		return
	}
	s.snap.ClientName, s.snap.ReverseName = "unknown", "unknown"
	if s.cfg.ClientNameLookup != nil && s.snap.ClientAddr.IsValid() {
		s.cfg.ClientNameLookup(s.ctx, s.snap.ClientAddr).Apply(&s.snap)
	}
	if s.snap.ClientName == "" {
		s.snap.ClientName = "unknown"
	}
	if s.snap.ReverseName == "" {
		s.snap.ReverseName = "unknown"
	}
	s.updateNamaddr()
}

func (s *session) updateNamaddr() {
	addr := "unknown"
	if s.snap.ClientAddr.IsValid() {
		addr = s.snap.ClientAddr.String()
	}
	s.namaddr = s.snap.ClientName + "[" + addr + "]"
}

func (s *session) run() {
	defer s.releaseBuffers() // last: the deferred calls below still use them
	defer s.stop()
	defer s.conn.Close()
	defer s.abortTxn()
	// Implicit TLS (port 465): the server wraps the connection, unless
	// the caller's listener already did (tls.NewListener over Listener).
	preTLS, wrapped := s.conn.(*tls.Conn)
	s.setupPeer()
	s.logf("connect from %s", s.namaddr)
	defer s.logDisconnect()
	if wrapped || s.cfg.Role == RoleSubmissions && s.cfg.TLS != nil {
		if err := s.handshake(preTLS); err != nil {
			s.logf("SSL_accept error from %s: %s", s.namaddr, handshakeError(err))
			s.logf("lost connection after CONNECT from %s", s.namaddr)
			return
		}
		// smtpd_client_new_tls_session_rate_limit counts full
		// handshakes only; the 421 goes out over TLS.
		if !s.tlsState.DidResume {
			if reply, ok := s.limits.NewTLSSession(); !ok {
				s.reply(reply)
				s.bw.Flush()
				return
			}
		}
	}
	if s.connectStage("CONNECT") {
		s.loop()
	}
	s.bw.Flush()
}

func (s *session) setTLS(cs *tls.ConnectionState) {
	s.tlsState = cs
	var ti *restrictions.TLSInfo
	var err error
	if s.cfg.TLSPolicy != nil {
		ti, err = s.cfg.TLSPolicy.TLSInfo(cs)
	} else {
		ti, err = restrictions.TLSInfoFrom(cs, s.cfg.TLSFingerprintDigest)
	}
	if err == nil && ti != nil {
		s.snap.TLS = ti
	} else {
		s.snap.TLS = &restrictions.TLSInfo{Protocol: tlsVersionName(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite)}
	}
}

// connectStage sends the banner, after the client restrictions when
// smtpd_delay_reject = no. It reports whether the session goes on.
func (s *session) connectStage(verb string) bool {
	if !s.cfg.DelayReject && s.cfg.Checker != nil {
		d := s.check(restrictions.StageClient, verb)
		if d.Hangup {
			return false
		}
		if !d.Accepted() {
			if d.Disconnect {
				s.reply(d.Reply.String())
				return false
			}
			// The rejection takes the place of the greeting; every later
			// command but QUIT gets "503 5.7.0 Error: access denied"
			// (seen in Postfix 3.7).
			r := d.Reply
			s.accessDenied = &r
			s.reply(r.String())
			return true
		}
	}
	s.reply("220 " + s.cfg.Banner)
	return true
}

// check runs the restrictions of stage, carries the transaction state,
// collects effects and logs the events.
func (s *session) check(stage restrictions.Stage, verb string) restrictions.Decision {
	if s.cfg.Checker == nil {
		return restrictions.Decision{}
	}
	s.snap.Verb = verb
	s.snap.IllegalPipelining = s.illegalSet
	d := s.cfg.Checker.Check(s.ctx, stage, &s.snap)
	s.snap.Verb = ""
	s.snap.Txn = d.Txn
	for _, e := range d.Log {
		s.logEvent(e, verb)
	}
	if d.Accepted() && s.env != nil {
		mergeEffects(&s.env.Effects, d.Effects)
	}
	return d
}

func mergeEffects(dst *restrictions.Effects, src restrictions.Effects) {
	dst.Hold = dst.Hold || src.Hold
	dst.Discard = dst.Discard || src.Discard
	if src.Filter != "" {
		dst.Filter = src.Filter
	}
	if src.Redirect != "" {
		dst.Redirect = src.Redirect
	}
	dst.BCC = append(dst.BCC, src.BCC...)
	dst.Prepend = append(dst.Prepend, src.Prepend...)
}

// reply queues one reply line (or several, separated by "\n"); the
// output is flushed before the next blocking read, so that pipelined
// replies go out in one write (RFC 2920).
func (s *session) reply(text string) {
	// smtpd_soft_error_limit, smtpd_error_sleep_time: once the client has
	// made that many errors every reply is delayed, the 421 of
	// smtpd_hard_error_limit included. A command's own error counts from
	// the next reply on (seen with Postfix 3.7.11,
	// errorsleep_oracle_test.go). Server.Close cuts the wait short.
	if s.errorCount >= s.cfg.SoftErrorLimit && s.cfg.ErrorSleepTime > 0 {
		s.cfg.Sleep(s.ctx, s.cfg.ErrorSleepTime)
	}
	// A reply may echo client text; never let a CR or other control
	// character through.
	text = strings.Map(func(r rune) rune {
		if r != '\n' && (r < ' ' || r == 0x7f) {
			return '?'
		}
		return r
	}, text)
	if strings.IndexByte(text, '\n') >= 0 {
		lines := strings.Split(text, "\n")
		for i, l := range lines {
			if i < len(lines)-1 && len(l) >= 3 {
				l = l[:3] + "-" + strings.TrimPrefix(l[3:], " ")
			}
			s.bw.WriteString(l)
			s.bw.WriteString("\r\n")
		}
	} else {
		s.bw.WriteString(text)
		s.bw.WriteString("\r\n")
	}
	if s.br.Buffered() == 0 {
		s.bw.Flush()
	}
}

// replyErr is reply for a 4xx/5xx that counts as a client error.
func (s *session) replyErr(text string) {
	s.reply(text)
	s.errorCount++
}

// command-line reading errors.
var (
	errTimeout = errors.New("timeout")
	errLost    = errors.New("lost connection")
)

// readLine reads one command line of at most limit bytes (the rest of a
// longer line is discarded, as Postfix's smtp_get does), without its line
// end. bare reports a line that ended in a lone LF.
func (s *session) readLine(timeout time.Duration) (line []byte, bare bool, err error) {
	if s.br.Buffered() == 0 {
		if err := s.bw.Flush(); err != nil {
			return nil, false, errLost
		}
	}
	s.readTimeout = timeout
	limit := s.cfg.LineLengthLimit
	buf := s.lineBuf[:0]
	defer func() { s.lineBuf = buf[:0] }()
	for {
		chunk, rerr := s.br.ReadSlice('\n')
		if len(buf) < limit {
			n := min(len(chunk), limit-len(buf))
			buf = append(buf, chunk[:n]...)
		} else if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			// keep the line end of an overlong line for the checks below
			buf = append(buf[:limit], '\n')
			if len(chunk) > 1 && chunk[len(chunk)-2] == '\r' {
				buf = append(buf[:limit], '\r', '\n')
			}
		}
		if rerr == nil {
			break
		}
		if rerr == bufio.ErrBufferFull {
			continue
		}
		var ne net.Error
		if errors.As(rerr, &ne) && ne.Timeout() {
			return nil, false, errTimeout
		}
		return nil, false, errLost
	}
	if n := len(buf); n > 0 && buf[n-1] == '\n' {
		buf = buf[:n-1]
		if n >= 2 && buf[n-2] == '\r' {
			buf = buf[:n-2]
		} else {
			bare = true
		}
	}
	return buf, bare, nil
}

// loop reads and runs commands until QUIT, an error or a disconnecting
// reply.
func (s *session) loop() {
	for {
		if s.errorCount >= s.cfg.HardErrorLimit {
			s.reply(fmt.Sprintf("421 4.7.0 %s Error: too many errors", s.cfg.Hostname))
			s.logf("too many errors after %s from %s", s.lastCmd, s.namaddr)
			return
		}
		s.idle.Store(true)
		if s.stopReq.Load() && s.br.Buffered() == 0 {
			s.reply("421 4.3.2 " + s.cfg.Hostname + " Service shutting down, closing transmission channel")
			return
		}
		line, bare, err := s.readLine(s.cfg.Timeout)
		s.idle.Store(false)
		if err != nil {
			if err == errTimeout && s.stopReq.Load() {
				s.reply("421 4.3.2 " + s.cfg.Hostname + " Service shutting down, closing transmission channel")
				return
			}
			if err == errTimeout {
				s.reply(fmt.Sprintf("421 4.4.2 %s Error: timeout exceeded", s.cfg.Hostname))
				s.logf("timeout after %s from %s", s.lastCmd, s.namaddr)
				return
			}
			s.logf("lost connection after %s from %s", s.lastCmd, s.namaddr)
			return
		}
		if bare && s.cfg.ForbidBareNewline == BareNewlineReject && !s.bareExcluded() {
			s.reply(s.bareNewlineReply())
			s.logf("disconnect: bare <LF> received from %s after %s", s.namaddr, s.lastCmd)
			return
		}
		if err := s.command(line); err != nil {
			return
		}
	}
}

// bareNewlineReply is "550 5.5.2 HOST Error: bare <LF> received" with
// smtpd_forbid_bare_newline_reject_code.
func (s *session) bareNewlineReply() string {
	return fmt.Sprintf("%d 5.5.2 %s Error: bare <LF> received", s.cfg.BareNewlineRejectCode, s.cfg.Hostname)
}

func (s *session) bareExcluded() bool {
	l := s.cfg.BareNewlineExclusions
	if l == nil {
		return false
	}
	ok, _ := l.MatchHostAddr(s.ctx, s.snap.ClientName, s.snap.ClientAddr)
	return ok
}

// notePipelining records reject_unauth_pipelining's evidence: the client
// sent more input after a command that must end a pipelined group (RFC
// 2920 §3.1), or sent any command ahead without PIPELINING.
func (s *session) notePipelining(verb string) {
	if s.illegalSet || s.br.Buffered() == 0 {
		return
	}
	switch verb {
	case "EHLO", "HELO", "LHLO", "DATA", "VRFY", "NOOP":
		// RFC 2920 §3.1: these end a group of pipelined commands.
		// STARTTLS ends one too, but what follows it in the same
		// packet is thrown away unread (cmdStartTLS), and Postfix
		// neither logs nor refuses it (seen with Postfix 3.7.11).
	case "BDAT", "QUIT":
		// BDAT is followed by its chunk; after QUIT nothing matters.
		return
	default:
		if s.esmtp {
			return
		}
	}
	s.illegalSet = true
	peek, _ := s.br.Peek(min(s.br.Buffered(), 100))
	s.logf("improper command pipelining after %s from %s: %s", verb, s.namaddr, escapeLog(peek))
}

// count records a command for the disconnect line.
func (s *session) count(verb string, ok bool) {
	c := s.counts[verb]
	if c == nil {
		c = new([2]int)
		s.counts[verb] = c
	}
	c[1]++
	if ok {
		c[0]++
	}
}

// abortTxn forgets the transaction, aborting a message not committed.
func (s *session) abortTxn() {
	if s.msg != nil {
		s.msg.Abort()
		s.msg = nil
	}
	s.inMail = false
	s.env = nil
	s.rcptSeen = 0
	s.bdat = nil
	s.stickySize = 0
	// XFORWARD attributes last for one transaction (XFORWARD_README).
	s.xforward = nil
	s.snap.Sender, s.snap.Recipient, s.snap.RecipientCount = "", "", 0
	s.snap.Size, s.snap.QueueID, s.snap.SASLSender = 0, "", ""
	s.snap.SMTPUTF8 = false
	s.snap.Txn.Reset()
}

// snapshot copies the session state for an Envelope, which outlives the
// command that produced it.
func (s *session) snapshot() *restrictions.Snapshot {
	c := s.snap
	if c.Protocol == "" {
		c.Protocol = s.protocol()
	}
	return &c
}

// baseProtocol is SMTP, ESMTP or LMTP, as logged.
func (s *session) baseProtocol() string {
	p := "SMTP"
	if s.cfg.Role == RoleLMTP {
		p = "LMTP"
	} else if s.esmtp {
		p = "ESMTP"
	}
	if s.snap.Protocol != "" {
		p = s.snap.Protocol
	}
	return p
}

// protocol is the protocol name for Received:, with S for TLS and A for
// SASL.
func (s *session) protocol() string {
	p := "SMTP"
	if s.cfg.Role == RoleLMTP {
		p = "LMTP"
	} else if s.esmtp {
		p = "ESMTP"
	}
	if s.snap.Protocol != "" {
		p = s.snap.Protocol
	}
	if s.tlsState != nil {
		p += "S"
	}
	if s.authed {
		p += "A"
	}
	return p
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return "TLS-" + strconv.Itoa(int(v))
}

// escapeLog writes client bytes as Postfix logs them: CR and LF as \r
// and \n, other control characters in octal.
func escapeLog(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == '\r':
			sb.WriteString(`\r`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&sb, "\\%03o", c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

func printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

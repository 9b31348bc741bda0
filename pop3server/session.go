package pop3server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
)

// errLineTooLong: the client sent a line longer than MaxLineLength.
var errLineTooLong = errors.New("line too long")

// message is one message of the maildrop as the session listed it.
type message struct {
	uid       uint32
	key       string
	vsize     int64
	deleted   bool
	retrieved bool // sent whole by RETR: gets \Seen at the end
}

// session is one POP3 connection.
type session struct {
	srv     *Server
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	tls     bool
	rip     netip.AddrPort
	lip     netip.AddrPort
	id      string
	ctx     context.Context
	started time.Time

	// AUTHORIZATION state
	user       string // from USER
	failures   int
	lastUser   string // of the last failed login, for the log
	lastMethod string

	// TRANSACTION state
	name        string // authenticated user
	md          *mailbox.Maildir
	unlock      func()
	releaseUser func()
	msgs        []message
	totalSize   int64 // size at login, for the logout line
	stats       struct {
		top, topBytes, retr, retrBytes, del int64
	}
	quit     bool
	finished bool
	bad      int // unknown commands in a row
}

// maxBadCommands unknown commands in a row end the connection, as in
// Dovecot (CLIENT_MAX_BAD_COMMANDS).
const maxBadCommands = 20

func (s *Server) handle(c net.Conn, implicitTLS bool) {
	defer c.Close()
	ss := &session{
		srv:     s,
		conn:    c,
		rip:     addrPort(c.RemoteAddr()),
		lip:     addrPort(c.LocalAddr()),
		id:      newSessionID(),
		started: time.Now(),
	}
	if !s.acquireIP(ss.rip.Addr()) {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "-ERR [SYS/TEMP] Too many connections from your address.\r\n")
		s.logger().Info(fmt.Sprintf("pop3-login: Disconnected: Too many connections from the address: rip=%s, lip=%s",
			ss.rip.Addr(), ss.lip.Addr()))
		return
	}
	defer s.releaseIP(ss.rip.Addr())
	if implicitTLS {
		tc := tls.Server(c, s.TLSConfig)
		tc.SetDeadline(time.Now().Add(s.idle()))
		if err := tc.Handshake(); err != nil {
			s.logger().Info(fmt.Sprintf("pop3-login: Disconnected: TLS handshake failed: %v: rip=%s, lip=%s, session=<%s>",
				err, ss.rip.Addr(), ss.lip.Addr(), ss.id))
			return
		}
		ss.conn, ss.tls = tc, true
	}
	ss.br = bufio.NewReaderSize(ss.conn, s.maxLine()+2)
	ss.bw = bufio.NewWriterSize(ss.conn, 32*1024)
	ss.run()
}

func (s *Server) idle() time.Duration { return orDefault(s.IdleTimeout, DefaultIdleTimeout) }
func (s *Server) maxLine() int        { return orDefault(s.MaxLineLength, DefaultMaxLineLength) }

// secured is Dovecot's notion: TLS, or a client at the server's own
// address (a local connection cannot be sniffed).
func (ss *session) secured() bool {
	return ss.tls || ss.rip.Addr().IsValid() && ss.rip.Addr() == ss.lip.Addr()
}

func (ss *session) plaintextAllowed() bool { return ss.secured() || ss.srv.AllowPlaintextAuth }

func (ss *session) clientInfo() auth.ClientInfo {
	return auth.ClientInfo{Service: "pop3", LocalAddr: ss.lip, RemoteAddr: ss.rip, Secured: ss.secured(), Session: ss.id}
}

func (ss *session) reply(format string, args ...any) {
	if len(args) == 0 {
		ss.bw.WriteString(format)
	} else {
		fmt.Fprintf(ss.bw, format, args...)
	}
	ss.bw.WriteString("\r\n")
}

// readLine reads one line (without CRLF or LF), flushing pending output
// first when no pipelined input is waiting.
func (ss *session) readLine() (string, error) {
	if ss.br.Buffered() == 0 {
		if err := ss.flush(); err != nil {
			return "", err
		}
	}
	ss.conn.SetReadDeadline(time.Now().Add(ss.srv.idle()))
	line, err := ss.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

func (ss *session) flush() error {
	ss.conn.SetWriteDeadline(time.Now().Add(ss.srv.idle()))
	return ss.bw.Flush()
}

func (ss *session) run() {
	s := ss.srv
	ss.ctx = auth.WithClientInfo(s.ctx, ss.clientInfo())
	greeting := s.Greeting
	if greeting == "" {
		greeting = "postkit ready."
	}
	ss.reply("+OK %s", greeting)
	reason := "Connection closed"
	defer func() {
		if ss.md != nil {
			if !ss.finished {
				ss.finish(reason)
			}
		} else {
			ss.logLoginDisconnect(reason)
		}
	}()
	for {
		line, err := ss.readLine()
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				ss.reply("-ERR Input line too long.")
				ss.flush()
				reason = "Input line too long"
			case isTimeout(err):
				ss.reply("-ERR Disconnected for inactivity.")
				ss.flush()
				reason = "Inactivity"
			}
			return
		}
		var done bool
		if cmd, err := ParseCommand(line); err != nil {
			ss.reply("-ERR Unknown command.")
			ss.bad++
		} else if ss.md == nil {
			done = ss.authorization(cmd)
		} else {
			done = ss.transaction(cmd)
		}
		if !done && ss.bad >= maxBadCommands {
			// Not a POP3 client (an HTTP request, a port scanner).
			ss.reply("-ERR Too many bad commands.")
			ss.flush()
			reason = "Too many bad commands"
			return
		}
		if done {
			ss.flush()
			if ss.quit {
				reason = "Logged out"
			}
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// capa answers CAPA (RFC 2449 5): the same list Dovecot 2.3 gives, with
// USER, SASL and STLS only before login.
func (ss *session) capa() {
	s := ss.srv
	ss.reply("+OK")
	ss.reply("CAPA")
	ss.reply("TOP")
	ss.reply("UIDL")
	ss.reply("RESP-CODES")
	ss.reply("PIPELINING")
	ss.reply("AUTH-RESP-CODE")
	if ss.md == nil {
		if s.TLSConfig != nil && !ss.tls {
			ss.reply("STLS")
		}
		if ss.plaintextAllowed() {
			ss.reply("USER")
		}
		// Dovecot says "SASL" even when no mechanism may be used yet.
		ss.reply("%s", strings.Join(append([]string{"SASL"}, ss.mechanisms()...), " "))
	} else if s.Implementation != "" {
		ss.reply("IMPLEMENTATION %s", s.Implementation)
	}
	ss.reply(".")
}

func (ss *session) mechanisms() []string {
	return ss.srv.Auth.Mechanisms(auth.SecurityOptions{NoPlaintext: !ss.plaintextAllowed()})
}

// authorization runs one command of the AUTHORIZATION state (RFC 1939 4);
// it reports whether the connection is to be closed.
func (ss *session) authorization(cmd Command) bool {
	s := ss.srv
	switch cmd.Name {
	case "CAPA":
		ss.capa()
	case "QUIT":
		ss.reply("+OK Logging out.")
		ss.quit = true
		return true
	case "STLS":
		// RFC 2595 4.
		switch {
		case s.TLSConfig == nil:
			ss.reply("-ERR TLS support isn't enabled.")
		case ss.tls:
			ss.reply("-ERR TLS is already active.")
		default:
			ss.reply("+OK Begin TLS negotiation now.")
			if err := ss.flush(); err != nil {
				return true
			}
			// Anything the client pipelined after STLS was sent in the
			// clear: it is dropped, not executed under TLS (the STARTTLS
			// command injection attack).
			tc := tls.Server(ss.conn, s.TLSConfig)
			tc.SetDeadline(time.Now().Add(s.idle()))
			if err := tc.Handshake(); err != nil {
				return true
			}
			tc.SetDeadline(time.Time{})
			ss.conn, ss.tls = tc, true
			ss.br = bufio.NewReaderSize(tc, s.maxLine()+2)
			ss.bw = bufio.NewWriterSize(tc, 32*1024)
			ss.user = ""
			ss.ctx = auth.WithClientInfo(s.ctx, ss.clientInfo())
		}
	case "USER":
		if !ss.plaintextAllowed() {
			ss.reply("-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
			return false
		}
		if len(cmd.Args) != 1 {
			ss.reply("-ERR Invalid user name.")
			return false
		}
		ss.user = cmd.Args[0]
		ss.reply("+OK")
	case "PASS":
		if !ss.plaintextAllowed() {
			ss.reply("-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
			return false
		}
		if ss.user == "" {
			ss.reply("-ERR No username given.")
			return false
		}
		user := ss.user
		ss.user = ""
		u, err := s.Auth.Verify(ss.ctx, user, cmd.Rest)
		if err != nil {
			return ss.authFailed(user, "PLAIN", err)
		}
		return ss.login(u.Name, "PLAIN")
	case "AUTH":
		return ss.auth(cmd)
	default:
		ss.reply("-ERR Unknown command.")
		ss.bad++
		return false
	}
	ss.bad = 0
	return false
}

// authFailed answers a failed login; true when the connection must close.
func (ss *session) authFailed(user, method string, err error) bool {
	if errors.Is(err, auth.ErrTemporary) {
		ss.reply("-ERR [SYS/TEMP] Temporary authentication failure.")
		return false
	}
	ss.failures++
	ss.lastUser, ss.lastMethod = user, method
	ss.reply("-ERR [AUTH] Authentication failed.")
	if ss.failures >= orDefault(ss.srv.MaxAuthFailures, DefaultMaxAuthFailures) {
		return true
	}
	return false
}

// auth runs AUTH (RFC 5034).
func (ss *session) auth(cmd Command) bool {
	s := ss.srv
	mechs := ss.mechanisms()
	if len(cmd.Args) == 0 {
		// The RFC 1734 listing that fetchmail and others still use.
		ss.reply("+OK")
		for _, m := range mechs {
			ss.reply("%s", m)
		}
		ss.reply(".")
		return false
	}
	if len(cmd.Args) > 2 {
		ss.reply("-ERR [AUTH] Invalid AUTH parameters.")
		return false
	}
	name := strings.ToUpper(cmd.Args[0])
	offered := false
	for _, m := range mechs {
		if m == name {
			offered = true
		}
	}
	if !offered {
		if _, known := auth.MechanismFlags(name); known && !ss.plaintextAllowed() {
			ss.reply("-ERR [AUTH] Plaintext authentication disabled.")
		} else {
			ss.reply("-ERR [AUTH] Unsupported authentication mechanism.")
		}
		return false
	}
	mech, err := s.Auth.NewMech(name)
	if err != nil {
		ss.reply("-ERR [AUTH] Unsupported authentication mechanism.")
		return false
	}
	var resp []byte
	if len(cmd.Args) == 2 {
		if cmd.Args[1] != "=" {
			resp, err = base64.StdEncoding.DecodeString(cmd.Args[1])
			if err != nil {
				ss.reply("-ERR [AUTH] Invalid base64 data in initial response.")
				return false
			}
		} else {
			resp = []byte{}
		}
	}
	for {
		challenge, done, err := mech.Next(ss.ctx, resp)
		if err != nil {
			return ss.authFailed(mech.User(), name, err)
		}
		if done && len(challenge) == 0 {
			return ss.login(mech.User(), name)
		}
		// A challenge, or the server's additional data on success (RFC
		// 5034 4: sent as a challenge, answered by an empty line).
		ss.reply("+ %s", base64.StdEncoding.EncodeToString(challenge))
		line, lerr := ss.readLine()
		if lerr != nil {
			return true
		}
		if line == "*" {
			ss.reply("-ERR Authentication aborted by client.")
			return false
		}
		if done {
			if line != "" {
				ss.reply("-ERR [AUTH] Authentication failed.")
				return false
			}
			return ss.login(mech.User(), name)
		}
		resp, err = base64.StdEncoding.DecodeString(line)
		if err != nil {
			ss.reply("-ERR [AUTH] Invalid base64 data in continued response.")
			return false
		}
	}
}

// login opens the authenticated user's maildrop: the TRANSACTION state
// starts, or the login is refused with a response code (RFC 2449 8.1
// IN-USE and SYS/TEMP, RFC 3206).
func (ss *session) login(name, method string) bool {
	s := ss.srv
	u := auth.User{Name: name}
	if s.Auth.UserDB != nil {
		var err error
		u, err = s.Auth.LookupUser(ss.ctx, name)
		if err != nil {
			s.logger().Error(fmt.Sprintf("pop3(%s)<%d><%s>: Error: user lookup: %v", name, mpid, ss.id, err))
			ss.reply("-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.")
			return false
		}
		if u.Name == "" {
			u.Name = name
		}
	}
	release, ok := s.acquireUserIP(u.Name, ss.rip.Addr())
	if !ok {
		ss.reply("-ERR [IN-USE] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=%d)",
			orDefault(s.MaxUserIPConnections, DefaultMaxUserIPConnections))
		return false
	}
	pathFn := s.MailboxPath
	if pathFn == nil {
		pathFn = DefaultMailboxPath
	}
	fail := func(code, text string, err error) bool {
		release()
		s.logger().Error(fmt.Sprintf("pop3(%s)<%d><%s>: Error: %v", u.Name, mpid, ss.id, err))
		ss.reply("-ERR [%s] %s", code, text)
		return false
	}
	dir, err := pathFn(ss.ctx, u)
	if err != nil {
		return fail("SYS/PERM", "Mailbox is not available.", err)
	}
	md, err := mailbox.OpenMaildir(ss.ctx, dir, mailbox.MaildirOpenOptions{
		Create: true, Hub: s.Hub, Hostname: s.Hostname, UID: u.UID, GID: u.GID,
	})
	if err != nil {
		return fail("SYS/TEMP", "Internal error occurred. Refer to server log for more information.", err)
	}
	unlock, err := md.LockSession()
	if err != nil {
		release()
		if errors.Is(err, mailbox.ErrLocked) {
			ss.reply("-ERR [IN-USE] Mailbox is locked by another POP3 session.")
			return false
		}
		s.logger().Error(fmt.Sprintf("pop3(%s)<%d><%s>: Error: %v", u.Name, mpid, ss.id, err))
		ss.reply("-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.")
		return false
	}
	// The lock is held: list the maildrop as it is now (RFC 1939 8:
	// messages arriving later are not seen by this session).
	if _, err := md.Sync(ss.ctx); err != nil {
		unlock()
		return fail("SYS/TEMP", "Internal error occurred. Refer to server log for more information.", err)
	}
	all := md.Messages()
	ss.msgs = make([]message, 0, len(all))
	for _, m := range all {
		vs, err := virtualSize(filepath.Join(md.Path(), m.Name), m.Key, func() (*os.File, error) {
			f, _, err := md.Open(ss.ctx, m.UID)
			return f, err
		})
		if errors.Is(err, mailbox.ErrNoMessage) {
			continue // expunged by another session since the Sync
		}
		if err != nil {
			unlock()
			return fail("SYS/TEMP", "Internal error occurred. Refer to server log for more information.", err)
		}
		ss.msgs = append(ss.msgs, message{uid: m.UID, key: m.Key, vsize: vs})
		ss.totalSize += vs
	}
	ss.md, ss.unlock, ss.releaseUser, ss.name = md, unlock, release, u.Name
	ss.user = ""
	tlsNote := ""
	if ss.tls {
		tlsNote = ", TLS"
	} else if ss.secured() {
		tlsNote = ", secured"
	}
	s.logger().Info(fmt.Sprintf("pop3-login: Login: user=<%s>, method=%s, rip=%s, lip=%s, mpid=%d%s, session=<%s>",
		u.Name, method, ss.rip.Addr(), ss.lip.Addr(), mpid, tlsNote, ss.id))
	ss.reply("+OK Logged in.")
	return false
}

// logLoginDisconnect logs the end of a connection that never logged in,
// as Dovecot's pop3-login does.
func (ss *session) logLoginDisconnect(reason string) {
	secs := int(time.Since(ss.started).Seconds())
	note := ""
	if ss.tls {
		note = ", TLS"
	} else if ss.secured() {
		note = ", secured"
	}
	if ss.failures > 0 {
		ss.srv.logger().Info(fmt.Sprintf("pop3-login: Disconnected (auth failed, %d attempts in %d secs): user=<%s>, method=%s, rip=%s, lip=%s%s, session=<%s>",
			ss.failures, secs, ss.lastUser, ss.lastMethod, ss.rip.Addr(), ss.lip.Addr(), note, ss.id))
		return
	}
	ss.srv.logger().Info(fmt.Sprintf("pop3-login: Disconnected: %s (no auth attempts in %d secs): user=<>, rip=%s, lip=%s%s, session=<%s>",
		reason, secs, ss.rip.Addr(), ss.lip.Addr(), note, ss.id))
}

// msgArg resolves a message-number argument; ok false after an error
// response was written.
func (ss *session) msgArg(arg string, allowDeleted bool) (int, bool) {
	n, ok := parseNumber(arg)
	if !ok {
		ss.reply("-ERR Invalid message number: %s", arg)
		return 0, false
	}
	if n < 1 || n > len(ss.msgs) {
		ss.reply("-ERR There's no message %d.", n)
		return 0, false
	}
	if ss.msgs[n-1].deleted && !allowDeleted {
		ss.reply("-ERR Message is deleted.")
		return 0, false
	}
	return n - 1, true
}

// uidl is the unique-id of a message: Dovecot's default pop3_uidl_format
// "%08Xu%08Xv", the IMAP UID then the UIDVALIDITY, each as eight lower-case
// hex digits. It stays the same for as long as the IMAP UID does.
func (ss *session) uidl(m message) string {
	return fmt.Sprintf("%08x%08x", m.uid, ss.md.UIDValidity())
}

// transaction runs one command of the TRANSACTION state (RFC 1939 5); it
// reports whether the connection is to be closed.
func (ss *session) transaction(cmd Command) bool {
	args := cmd.Args
	noArgs := func() bool {
		if len(args) != 0 {
			ss.reply("-ERR Unexpected arguments.")
			return false
		}
		return true
	}
	// oneMsg handles the "[msg]" argument form; -1 when absent.
	oneMsg := func() (int, bool) {
		if len(args) == 0 {
			return -1, true
		}
		if len(args) > 1 {
			ss.reply("-ERR Noise after message number: %s", strings.Join(args[1:], " "))
			return 0, false
		}
		return ss.msgArg(args[0], false)
	}
	switch cmd.Name {
	case "CAPA":
		ss.capa()
	case "NOOP":
		ss.reply("+OK")
	case "STAT":
		if !noArgs() {
			break
		}
		var n, size int64
		for _, m := range ss.msgs {
			if !m.deleted {
				n++
				size += m.vsize
			}
		}
		ss.reply("+OK %d %d", n, size)
	case "LIST", "UIDL":
		i, ok := oneMsg()
		if !ok {
			break
		}
		value := func(m message) string {
			if cmd.Name == "LIST" {
				return strconv.FormatInt(m.vsize, 10)
			}
			return ss.uidl(m)
		}
		if i >= 0 {
			ss.reply("+OK %d %s", i+1, value(ss.msgs[i]))
			break
		}
		if cmd.Name == "LIST" {
			n := 0
			for _, m := range ss.msgs {
				if !m.deleted {
					n++
				}
			}
			ss.reply("+OK %d messages:", n)
		} else {
			ss.reply("+OK")
		}
		for i, m := range ss.msgs {
			if !m.deleted {
				ss.reply("%d %s", i+1, value(m))
			}
		}
		ss.reply(".")
	case "RETR":
		if len(args) != 1 {
			ss.reply("-ERR Invalid arguments.")
			break
		}
		if i, ok := ss.msgArg(args[0], false); ok {
			return ss.send(i, -1)
		}
	case "TOP":
		if len(args) != 2 {
			ss.reply("-ERR Invalid arguments.")
			break
		}
		i, ok := ss.msgArg(args[0], false)
		if !ok {
			break
		}
		lines, ok := parseNumber(args[1])
		if !ok {
			ss.reply("-ERR Invalid number of lines: %s", args[1])
			break
		}
		return ss.send(i, lines)
	case "DELE":
		if len(args) != 1 {
			ss.reply("-ERR Invalid arguments.")
			break
		}
		if i, ok := ss.msgArg(args[0], false); ok {
			ss.msgs[i].deleted = true
			ss.stats.del++
			ss.reply("+OK Marked to be deleted.")
		}
	case "RSET":
		// RFC 1939 5: unmark deleted messages. Dovecot forgets the
		// retrievals too (no Seen flags for them), and so does postkit.
		for i := range ss.msgs {
			ss.msgs[i].deleted = false
			ss.msgs[i].retrieved = false
		}
		ss.stats.del = 0
		ss.reply("+OK")
	case "QUIT":
		ss.quit = true
		deleted, err := ss.update()
		// The lock goes before the answer: a client that reconnects as
		// soon as it reads +OK must not find its mailbox still in use.
		ss.finish("Logged out")
		switch {
		case err != nil:
			ss.reply("-ERR [SYS/TEMP] Some deleted messages could not be expunged.")
		case deleted:
			ss.reply("+OK Logging out, messages deleted.")
		default:
			ss.reply("+OK Logging out.")
		}
		return true
	default:
		ss.reply("-ERR Unknown command: %s", cmd.Name)
		ss.bad++
		return false
	}
	ss.bad = 0
	return false
}

// send answers RETR (lines < 0) and TOP.
func (ss *session) send(i, lines int) bool {
	m := ss.msgs[i]
	f, _, err := ss.md.Open(ss.ctx, m.uid)
	if err != nil {
		if errors.Is(err, mailbox.ErrNoMessage) {
			ss.reply("-ERR Message was expunged by another session.")
		} else {
			ss.srv.logger().Error(fmt.Sprintf("pop3(%s)<%d><%s>: Error: open message %d: %v", ss.name, mpid, ss.id, m.uid, err))
			ss.reply("-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.")
		}
		return false
	}
	defer f.Close()
	head := fmt.Sprintf("+OK %d octets\r\n", m.vsize)
	if lines >= 0 {
		head = "+OK\r\n"
	}
	ss.bw.WriteString(head)
	n, err := writeMessage(ss.bw, f, lines)
	if err != nil {
		// The response is cut short: the client cannot resynchronise.
		ss.srv.logger().Error(fmt.Sprintf("pop3(%s)<%d><%s>: Error: send message %d: %v", ss.name, mpid, ss.id, m.uid, err))
		return true
	}
	ss.bw.WriteString(".\r\n")
	n += int64(len(head))
	if lines >= 0 {
		ss.stats.top++
		ss.stats.topBytes += n
	} else {
		ss.stats.retr++
		ss.stats.retrBytes += n
		ss.msgs[i].retrieved = true
	}
	return false
}

// update is the UPDATE state (RFC 1939 6), entered by QUIT: deleted
// messages are expunged and retrieved ones marked seen.
func (ss *session) update() (deleted bool, err error) {
	var uids []uint32
	for _, m := range ss.msgs {
		if m.deleted {
			uids = append(uids, m.uid)
		}
	}
	if len(uids) > 0 {
		if err := ss.md.Expunge(ss.updateCtx(), uids...); err != nil {
			ss.srv.logger().Error(fmt.Sprintf("pop3(%s)<%d><%s>: Error: expunge: %v", ss.name, mpid, ss.id, err))
			return false, err
		}
		deleted = true
	}
	ss.markSeen()
	return deleted, nil
}

// updateCtx is the context of the changes made as a session ends: they
// are finished even when Server.Close cancelled the session's context.
func (ss *session) updateCtx() context.Context {
	return context.WithoutCancel(ss.ctx)
}

// markSeen gives the Seen flag to the messages RETR sent that are not
// marked deleted. Dovecot does it on QUIT and also when the client just
// drops the connection (only deletions need QUIT), and postkit does too.
func (ss *session) markSeen() {
	if ss.srv.NoFlagUpdates {
		return
	}
	var todo []uint32
	for _, m := range ss.msgs {
		if m.retrieved && !m.deleted {
			todo = append(todo, m.uid)
		}
	}
	if len(todo) == 0 {
		return
	}
	// Current flags: an IMAP session may have changed them meanwhile.
	ctx := ss.updateCtx()
	if _, err := ss.md.Sync(ctx); err != nil {
		ss.srv.logger().Error(fmt.Sprintf("pop3(%s)<%d><%s>: Error: sync: %v", ss.name, mpid, ss.id, err))
		return
	}
	for _, uid := range todo {
		cur, ok := ss.md.Message(uid)
		if !ok || cur.Flags&mailbox.FlagSeen != 0 {
			continue
		}
		if _, err := ss.md.SetFlags(ctx, uid, cur.Flags|mailbox.FlagSeen); err != nil && !errors.Is(err, mailbox.ErrNoMessage) {
			ss.srv.logger().Error(fmt.Sprintf("pop3(%s)<%d><%s>: Error: set \\Seen on %d: %v", ss.name, mpid, ss.id, uid, err))
		}
	}
}

// finish ends a logged-in session: Seen flags for a dropped connection,
// the lock released, and Dovecot's logout line
// (pop3_logout_format "top=%t/%p, retr=%r/%b, del=%d/%m, size=%s").
func (ss *session) finish(reason string) {
	ss.finished = true
	if !ss.quit {
		ss.markSeen()
	}
	ss.unlock()
	ss.releaseUser()
	ss.srv.logger().Info(fmt.Sprintf("pop3(%s)<%d><%s>: Disconnected: %s top=%d/%d, retr=%d/%d, del=%d/%d, size=%d",
		ss.name, mpid, ss.id, reason, ss.stats.top, ss.stats.topBytes, ss.stats.retr, ss.stats.retrBytes,
		ss.stats.del, len(ss.msgs), ss.totalSize))
}

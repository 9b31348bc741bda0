package smtpserver

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/restrictions"
)

// handler runs one command; ok=false counts as a client error
// (smtpd_*_error_limit); a non-nil error ends the session.
type handler func(s *session, arg string) (ok bool, err error)

var handlers map[string]handler

func init() {
	handlers = map[string]handler{
		"HELO": (*session).cmdHelo, "EHLO": (*session).cmdEhlo, "LHLO": (*session).cmdEhlo,
		"STARTTLS": (*session).cmdStartTLS, "AUTH": (*session).cmdAuth,
		"MAIL": (*session).cmdMail, "RCPT": (*session).cmdRcpt,
		"DATA": (*session).cmdData, "BDAT": (*session).cmdBdat,
		"RSET": (*session).cmdRset, "NOOP": (*session).cmdNoop,
		"VRFY": (*session).cmdVrfy, "ETRN": (*session).cmdEtrn,
		"QUIT":    (*session).cmdQuit,
		"XCLIENT": (*session).cmdXClient, "XFORWARD": (*session).cmdXForward,
	}
}

// cmdOrder is the order of the counters on the "disconnect from" line
// (Postfix's command table order).
var cmdOrder = []string{"helo", "ehlo", "lhlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown"}

// isHeaderLine reports whether a command line looks like a message header
// ("Subject: x", "Received : y"): a client that sends its message without
// DATA, or a web client (Postfix smtpd's is_header check). Such a client
// gets 221 and is disconnected.
func isHeaderLine(line string) bool {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 0x7f && line[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}

// defaultForbiddenCommands is smtpd_forbidden_commands' default in Postfix
// 3.7.11: web proxy verbs, and any command that does not start with a
// letter (a stray "." after a message the server did not take as one).
const defaultForbiddenCommands = "CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}"

// preTLSAllowed are the commands a client may give before STARTTLS when
// TLS is required (smtpd_tls_security_level = encrypt).
var preTLSAllowed = map[string]bool{"EHLO": true, "HELO": true, "LHLO": true, "STARTTLS": true,
	"NOOP": true, "QUIT": true, "RSET": true, "XCLIENT": true, "XFORWARD": true}

// splitVerb splits a command line into its upper-cased verb and the rest.
func splitVerb(line string) (verb, arg string) {
	line = strings.TrimLeft(line, " \t")
	i := strings.IndexAny(line, " \t")
	if i < 0 {
		return strings.ToUpper(line), ""
	}
	return strings.ToUpper(line[:i]), strings.Trim(line[i+1:], " \t")
}

// command runs one command line.
func (s *session) command(line []byte) error {
	verb, arg := splitVerb(string(line))
	if verb == "" {
		// An empty line counts as an unknown command (Postfix 3.7).
		s.lastCmd = "UNKNOWN"
		s.count("unknown", false)
		s.replyErr("500 5.5.2 Error: bad syntax")
		return nil
	}
	if s.forbiddenCommand(verb, line) {
		s.logf("warning: non-SMTP command from %s: %s", s.namaddr, printable(truncate(string(line), 100)))
		s.reply("221 2.7.0 Error: I can break rules, too. Goodbye.")
		return errClose
	}
	lower := strings.ToLower(verb)
	if s.accessDenied != nil && verb != "QUIT" {
		// smtpd_delay_reject = no and the client was rejected at connect.
		if handlers[verb] == nil {
			lower = "unknown"
		}
		s.count(lower, false)
		s.replyErr("503 5.7.0 Error: access denied for " + s.namaddr)
		return nil
	}
	h := handlers[verb]
	if (verb == "LHLO") != (s.cfg.Role == RoleLMTP) && (verb == "LHLO" || verb == "HELO" || verb == "EHLO") {
		// LMTP knows only LHLO; SMTP does not know LHLO.
		h = nil
	}
	if h == nil {
		s.lastCmd = "UNKNOWN"
		s.count("unknown", false)
		// Postfix looks for improper pipelining only after commands it
		// knows (seen with Postfix 3.7.11: "FOO\r\nNOOP" after HELO is
		// neither logged nor refused).
		s.replyErr("500 5.5.2 Error: command not recognized")
		return nil
	}
	s.lastCmd = verb
	s.notePipelining(verb)
	if s.forbidPipelining() {
		s.count(lower, false)
		return errClose
	}
	if s.cfg.TLSLevel == TLSEncrypt && s.tlsState == nil && !preTLSAllowed[verb] {
		s.count(lower, false)
		s.replyErr("530 5.7.0 Must issue a STARTTLS command first")
		return nil
	}
	ok, err := h(s, arg)
	if verb == "XCLIENT" && ok {
		// Postfix 3.7 counts even a successful XCLIENT as xclient=0/1 on
		// the disconnect line (seen with the live instance).
		s.count(lower, false)
		return err
	}
	s.count(lower, ok)
	if !ok {
		s.errorCount++
	}
	return err
}

// forbidPipelining applies smtpd_forbid_unauth_pipelining (Postfix
// 3.7.6 and later): a client that sent commands ahead where RFC 2920
// does not allow it gets "554 5.5.0 Error: SMTP protocol synchronization"
// instead of the command's reply and is disconnected; the "improper
// command pipelining" line (notePipelining) is the only log line besides
// the disconnect (seen with Postfix 3.7.11).
func (s *session) forbidPipelining() bool {
	if !s.cfg.ForbidUnauthPipelining || !s.illegalSet {
		return false
	}
	s.reply("554 5.5.0 Error: SMTP protocol synchronization")
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// replyDecision sends a restriction's rejection; it returns errClose when
// the session must end (421/521, HANGUP).
func (s *session) replyDecision(d restrictions.Decision) error {
	if d.Hangup {
		return errClose
	}
	s.reply(d.Reply.String())
	if d.Disconnect {
		return errClose
	}
	return nil
}

// heloReset forgets HELO-related and transaction state, as a new HELO,
// EHLO, STARTTLS or XCLIENT does.
func (s *session) heloReset() {
	s.abortTxn()
	s.snap.Helo = ""
	s.snap.ESMTP = false
	s.esmtp = false
	s.snap.Txn = restrictions.Txn{ClientDefer: s.snap.Txn.ClientDefer}
}

func (s *session) cmdHelo(arg string) (bool, error) {
	if arg == "" {
		s.reply("501 Syntax: HELO hostname")
		return false, nil
	}
	return s.helo(arg, false)
}

func (s *session) cmdEhlo(arg string) (bool, error) {
	if arg == "" {
		if s.cfg.Role == RoleLMTP {
			s.reply("501 Syntax: LHLO hostname")
		} else {
			s.reply("501 Syntax: EHLO hostname")
		}
		return false, nil
	}
	return s.helo(arg, true)
}

func (s *session) helo(arg string, esmtp bool) (bool, error) {
	// Postfix takes the first word and ignores the rest.
	if i := strings.IndexAny(arg, " \t"); i >= 0 {
		arg = arg[:i]
	}
	s.heloReset()
	s.snap.Helo = arg
	s.snap.ESMTP = esmtp
	if !s.cfg.DelayReject && s.cfg.Checker != nil {
		verb := "HELO"
		if esmtp {
			verb = "EHLO"
		}
		d := s.check(restrictions.StageHelo, verb)
		if !d.Accepted() {
			s.snap.Helo = ""
			return false, s.replyDecision(d)
		}
	}
	s.esmtp = esmtp
	if !esmtp {
		s.reply("250 " + s.cfg.Hostname)
		return true, nil
	}
	s.reply(strings.Join(s.ehloLines(), "\n"))
	return true, nil
}

// ehloLines are the EHLO reply lines in Postfix's order (spec §4.7),
// without the discarded keywords.
func (s *session) ehloLines() []string {
	lines := []string{"250 " + s.cfg.Hostname}
	add := func(kw, line string) {
		for _, d := range s.cfg.DiscardEHLOKeywords {
			if strings.EqualFold(d, kw) {
				return
			}
		}
		lines = append(lines, "250 "+line)
	}
	add("pipelining", "PIPELINING")
	if s.cfg.MessageSizeLimit > 0 {
		add("size", "SIZE "+strconv.FormatInt(s.cfg.MessageSizeLimit, 10))
	} else {
		add("size", "SIZE")
	}
	if !s.cfg.DisableVRFY {
		add("vrfy", "VRFY")
	}
	if s.cfg.Role != RoleLMTP {
		add("etrn", "ETRN")
	}
	if s.cfg.TLS != nil && s.cfg.TLSLevel != TLSNone && s.tlsState == nil {
		add("starttls", "STARTTLS")
	}
	// Postfix keeps offering AUTH after a login (a second AUTH gets 503).
	if mechs := s.authMechs(); len(mechs) > 0 {
		add("auth", "AUTH "+strings.Join(mechs, " "))
		if s.cfg.BrokenSASLAuthClients {
			add("auth", "AUTH="+strings.Join(mechs, " "))
		}
	}
	if s.xclientOK() {
		add("xclient", "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT")
	}
	if s.xforwardOK() {
		add("xforward", "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT")
	}
	add("enhancedstatuscodes", "ENHANCEDSTATUSCODES")
	add("8bitmime", "8BITMIME")
	add("dsn", "DSN")
	if s.cfg.SMTPUTF8Enable {
		add("smtputf8", "SMTPUTF8")
	}
	add("chunking", "CHUNKING")
	return lines
}

// dsnDisabled: smtpd_discard_ehlo_keywords holds "dsn", and Postfix then
// refuses the DSN parameters too.
func (s *session) dsnDisabled() bool {
	for _, d := range s.cfg.DiscardEHLOKeywords {
		if strings.EqualFold(d, "dsn") {
			return true
		}
	}
	return false
}

// authMechs are the SASL mechanisms offered now; none without TLS under
// smtpd_tls_auth_only.
func (s *session) authMechs() []string {
	if s.cfg.Auth == nil {
		return nil
	}
	if s.cfg.TLSAuthOnly && s.tlsState == nil {
		return nil
	}
	return s.cfg.Auth.Mechanisms(s.tlsState != nil)
}

func (s *session) cmdStartTLS(arg string) (bool, error) {
	if arg != "" {
		s.reply("501 5.5.4 Syntax: STARTTLS")
		return false, nil
	}
	if s.tlsState != nil {
		s.reply("554 5.5.1 Error: TLS already active")
		return false, nil
	}
	if s.cfg.TLS == nil || s.cfg.TLSLevel == TLSNone {
		s.reply("502 5.5.1 Error: command not implemented")
		return false, nil
	}
	if reply, ok := s.limits.NewTLSSessionStatus(); !ok {
		s.reply(reply)
		return false, nil
	}
	s.reply("220 2.0.0 Ready to start TLS")
	s.bw.Flush()
	// Anything the client pipelined after STARTTLS in plaintext is
	// dropped with the old reader (the CVE-2011-0411 injection).
	if err := s.handshake(nil); err != nil {
		s.logf("SSL_accept error from %s: %s", s.namaddr, handshakeError(err))
		s.logf("lost connection after STARTTLS from %s", s.namaddr)
		return false, errClose
	}
	if !s.tlsState.DidResume {
		if reply, ok := s.limits.NewTLSSession(); !ok {
			s.reply(reply)
			return false, errClose
		}
	}
	// RFC 3207 §4.2: forget everything learnt from the client.
	s.heloReset()
	return true, nil
}

func (s *session) cmdAuth(arg string) (bool, error) {
	if len(s.authMechs()) == 0 {
		s.reply("503 5.5.1 Error: authentication not enabled")
		return false, nil
	}
	// Postfix 3.7 accepts AUTH before HELO/EHLO (seen live,
	// auth_oracle_test.go), so no HELO check here.
	if s.authed {
		s.reply("503 5.5.1 Error: already authenticated")
		return false, nil
	}
	if s.inMail {
		s.reply("503 5.5.1 Error: MAIL transaction in progress")
		return false, nil
	}
	fields := strings.Fields(arg)
	if len(fields) < 1 || len(fields) > 2 {
		s.reply("501 5.5.4 Syntax: AUTH mechanism")
		return false, nil
	}
	mechName := strings.ToUpper(fields[0])
	offered := false
	for _, m := range s.authMechs() {
		if strings.EqualFold(m, mechName) {
			offered = true
		}
	}
	if reply, ok := s.limits.Auth(); !ok {
		s.reply(reply)
		return false, nil
	}
	var mech auth.ServerMech
	var err error
	if offered {
		mech, err = s.cfg.Auth.NewMech(mechName)
	}
	if !offered || err != nil {
		s.authFailed(mechName, "Invalid authentication mechanism", "")
		return false, nil
	}
	var resp []byte
	if len(fields) == 2 {
		if fields[1] == "=" {
			resp = []byte{}
		} else if resp, err = base64.StdEncoding.DecodeString(fields[1]); err != nil {
			s.authFailed(mechName, "Invalid base64 data in initial response", "")
			return false, nil
		}
	}
	// The auth server learns the client as Postfix's
	// xsasl_dovecot_server tells Dovecot: service (smtpd_sasl_service),
	// addresses after XCLIENT, and whether TLS protects the session.
	// Dovecot keys its auth_penalty on the client address.
	actx := auth.WithClientInfo(s.ctx, auth.ClientInfo{
		Service:    s.cfg.SASLService,
		LocalAddr:  netip.AddrPortFrom(s.snap.ServerAddr, uint16(s.snap.ServerPort)),
		RemoteAddr: netip.AddrPortFrom(s.snap.ClientAddr, uint16(s.snap.ClientPort)),
		Secured:    s.tlsState != nil,
	})
	for {
		chal, done, err := mech.Next(actx, resp)
		if err != nil {
			if errors.Is(err, auth.ErrTemporary) {
				s.logf("warning: %s: SASL %s authentication failed: temporary failure", s.namaddr, mechName)
				s.reply("454 4.7.0 Temporary authentication failure")
				return false, nil
			}
			// Like Postfix, show the reason the auth server gave (a
			// Dovecot reason=), never our internal error text.
			reason, user := "(reason unavailable)", ""
			var de *auth.DovecotError
			if errors.As(err, &de) {
				if de.Reason != "" {
					reason = de.Reason
				}
				user = de.User
			}
			s.authFailed(mechName, reason, user)
			return false, nil
		}
		if done {
			s.authed = true
			s.snap.SASLMethod = mechName
			s.snap.SASLUsername = mech.User()
			s.reply("235 2.7.0 Authentication successful")
			return true, nil
		}
		s.reply("334 " + base64.StdEncoding.EncodeToString(chal))
		line, _, rerr := s.readLine(s.cfg.Timeout)
		if rerr != nil {
			if rerr == errTimeout {
				s.reply(fmt.Sprintf("421 4.4.2 %s Error: timeout exceeded", s.cfg.Hostname))
				s.logf("timeout after AUTH from %s", s.namaddr)
			} else {
				s.logf("lost connection after AUTH from %s", s.namaddr)
			}
			return false, errClose
		}
		if string(line) == "*" {
			s.reply("501 5.7.0 Authentication aborted")
			return false, nil
		}
		if resp, err = base64.StdEncoding.DecodeString(string(line)); err != nil {
			s.authFailed(mechName, "Invalid base64 data in continued response", "")
			return false, nil
		}
	}
}

// authFailed answers and logs a failed AUTH as Postfix does:
// "535 5.7.8 Error: authentication failed: REASON" and a warning naming
// the mechanism and, when known, the user.
func (s *session) authFailed(mech, reason, user string) {
	if user == "" {
		user = "(unavailable)"
	}
	s.logf("warning: %s: SASL %s authentication failed: %s, sasl_username=%s", s.namaddr, mech, reason, user)
	s.reply("535 5.7.8 Error: authentication failed: " + reason)
}

// splitPath splits "FROM:<addr> PARAM..." after the keyword into the
// address and the parameters. A <...> address may hold quoted spaces.
func splitPath(arg, keyword string) (addr string, params []string, ok bool) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return "", nil, false
	}
	rest := strings.TrimLeft(arg[len(keyword):], " \t")
	if rest == "" {
		return "", nil, false
	}
	end := len(rest)
	if rest[0] == '<' {
		inQuote, esc := false, false
		end = -1
		for i := 1; i < len(rest); i++ {
			c := rest[i]
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inQuote = !inQuote
			case c == '>' && !inQuote:
				end = i + 1
			}
			if end >= 0 {
				break
			}
		}
		if end < 0 {
			end = len(rest)
		}
	} else if i := strings.IndexAny(rest, " \t"); i >= 0 {
		end = i
	}
	addr = rest[:end]
	params = strings.Fields(rest[end:])
	return addr, params, true
}

func (s *session) cmdMail(arg string) (bool, error) {
	if s.cfg.HeloRequired && s.snap.Helo == "" {
		s.reply("503 5.5.1 Error: send HELO/EHLO first")
		return false, nil
	}
	if s.inMail {
		s.reply("503 5.5.1 Error: nested MAIL command")
		return false, nil
	}
	if s.bdat != nil {
		s.reply("503 5.5.1 Error: MAIL after BDAT")
		return false, nil
	}
	addrText, params, ok := splitPath(arg, "FROM:")
	if !ok {
		s.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
		return false, nil
	}
	// The address is judged before the parameters, as in Postfix; a
	// SMTPUTF8 parameter still allows a UTF-8 domain.
	smtputf8 := false
	for _, p := range params {
		if strings.EqualFold(p, "SMTPUTF8") && s.cfg.SMTPUTF8Enable {
			smtputf8 = true
		}
	}
	sender := strings.Trim(addrText, "<>")
	if s.cfg.Checker != nil {
		a, r, ok := s.cfg.Checker.ParseEnvelope(s.ctx, restrictions.StageSender, addrText, smtputf8)
		if !ok {
			s.reply(r.String())
			return false, nil
		}
		sender = a
	}
	env := &Envelope{XForward: s.xforward}
	for _, p := range params {
		name, val, hasVal := strings.Cut(p, "=")
		switch strings.ToUpper(name) {
		case "SIZE":
			n, err := strconv.ParseInt(val, 10, 64)
			if hasVal && isDigits(val) && err != nil {
				// Too large for a number (Postfix 3.7's wording).
				s.reply("552 5.3.4 Message size exceeds file system imposed limit")
				return false, nil
			}
			if !hasVal || err != nil || n < 0 || !isDigits(val) {
				s.reply("501 5.5.4 Bad message size syntax")
				return false, nil
			}
			env.Size = n
			// Postfix keeps the SIZE of a MAIL command that failed
			// later, until RSET, and checks it at the next MAIL.
			s.stickySize = n
		case "BODY":
			switch v := strings.ToUpper(val); v {
			case "7BIT", "8BITMIME":
				env.Body = v
			default:
				s.reply("555 5.5.4 Unsupported option: " + p)
				return false, nil
			}
		case "SMTPUTF8":
			if !s.cfg.SMTPUTF8Enable || hasVal {
				s.reply("555 5.5.4 Unsupported option: " + p)
				return false, nil
			}
			env.SMTPUTF8 = true
		case "RET":
			if s.dsnDisabled() {
				s.reply("501 5.7.1 DSN support is disabled")
				return false, nil
			}
			switch v := strings.ToUpper(val); v {
			case "FULL", "HDRS":
				if env.Ret != "" {
					s.reply("501 5.5.4 Bad RET parameter syntax")
					return false, nil
				}
				env.Ret = v
			default:
				s.reply("501 5.5.4 Bad RET parameter syntax")
				return false, nil
			}
		case "ENVID":
			if s.dsnDisabled() {
				s.reply("501 5.7.1 DSN support is disabled")
				return false, nil
			}
			v, ok := xtextDecode(val)
			if !hasVal || !ok || env.EnvID != "" || len(v) > 100 {
				s.reply("501 5.5.4 Bad ENVID parameter syntax")
				return false, nil
			}
			env.EnvID = v
		case "AUTH":
			// Postfix 3.7 accepts any AUTH= value, malformed xtext
			// included, and keeps it only for an authenticated client
			// (RFC 4954 §5).
			if v, ok := xtextDecode(val); hasVal && ok && s.authed {
				env.AuthFrom = v
			}
		default:
			s.reply("555 5.5.4 Unsupported option: " + p)
			return false, nil
		}
	}
	if env.Size == 0 {
		env.Size = s.stickySize
	}
	if s.cfg.MessageSizeLimit > 0 && env.Size > s.cfg.MessageSizeLimit {
		s.reply("552 5.3.4 Message size exceeds fixed limit")
		return false, nil
	}
	if reply, ok := s.limits.Message(); !ok {
		s.reply(reply)
		return false, nil
	}
	env.Sender = sender
	s.snap.Sender = sender
	s.snap.Size = env.Size
	s.snap.SMTPUTF8 = env.SMTPUTF8
	s.snap.SASLSender = env.AuthFrom
	s.snap.Instance = s.srv.instance()
	s.env = env
	if !s.cfg.DelayReject && s.cfg.Checker != nil {
		d := s.check(restrictions.StageSender, "MAIL")
		if !d.Accepted() {
			s.env = nil
			s.snap.Sender, s.snap.Size = "", 0
			return false, s.replyDecision(d)
		}
	}
	s.inMail = true
	s.reply("250 2.1.0 Ok")
	return true, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (s *session) cmdRcpt(arg string) (bool, error) {
	if !s.inMail {
		s.reply("503 5.5.1 Error: need MAIL command")
		return false, nil
	}
	if s.bdat != nil {
		s.reply("503 5.5.1 Error: RCPT after BDAT")
		return false, nil
	}
	addrText, params, ok := splitPath(arg, "TO:")
	if !ok {
		s.reply("501 5.5.4 Syntax: RCPT TO:<address>")
		return false, nil
	}
	if len(s.env.Recipients) >= s.cfg.RecipientLimit {
		s.reply("452 4.5.3 Error: too many recipients")
		return false, nil
	}
	addr := strings.Trim(addrText, "<>")
	if s.cfg.Checker != nil {
		a, r, ok := s.cfg.Checker.ParseEnvelope(s.ctx, restrictions.StageRecipient, addrText, s.env.SMTPUTF8)
		if !ok {
			s.reply(r.String())
			return false, nil
		}
		addr = a
	} else if addr == "" {
		s.reply("501 5.1.3 Bad recipient address syntax")
		return false, nil
	}
	var rcpt Recipient
	for _, p := range params {
		name, val, hasVal := strings.Cut(p, "=")
		switch strings.ToUpper(name) {
		case "NOTIFY":
			if s.dsnDisabled() {
				s.reply("501 5.7.1 DSN support is disabled")
				return false, nil
			}
			n, ok := parseNotify(val)
			if !hasVal || !ok || rcpt.Notify != nil {
				s.reply("501 5.5.4 Error: Bad NOTIFY parameter syntax")
				return false, nil
			}
			rcpt.Notify = n
		case "ORCPT":
			if s.dsnDisabled() {
				s.reply("501 5.7.1 DSN support is disabled")
				return false, nil
			}
			v, ok := xtextDecode(val)
			if !hasVal || !ok || rcpt.ORCPT != "" || !strings.Contains(v, ";") {
				s.reply("501 5.5.4 Error: Bad ORCPT parameter syntax")
				return false, nil
			}
			rcpt.ORCPT = v
		default:
			s.reply("555 5.5.4 Unsupported option: " + p)
			return false, nil
		}
	}
	if reply, ok := s.limits.Recipient(); !ok {
		s.reply(reply)
		return false, nil
	}
	rcpt.Addr = addr
	s.snap.Recipient = addr
	s.snap.RecipientCount = len(s.env.Recipients)
	if s.cfg.Checker != nil {
		d := s.check(restrictions.StageRecipient, "RCPT")
		if !d.Accepted() {
			s.snap.Recipient = ""
			return false, s.replyDecision(d)
		}
	}
	if err := s.ensureMsg(); err != nil {
		s.reply(handoffReply(err).String())
		return false, nil
	}
	s.env.Recipients = append(s.env.Recipients, rcpt)
	s.snap.RecipientCount = len(s.env.Recipients)
	s.reply("250 2.1.5 Ok")
	return true, nil
}

// ensureMsg opens the message of the transaction if there is none yet:
// at the first accepted recipient, or again after an end-of-data
// rejection that kept the transaction.
func (s *session) ensureMsg() error {
	if s.msg != nil {
		return nil
	}
	s.env.Session = s.snapshot()
	msg, err := s.cfg.Handoff.Open(s.ctx, s.env)
	if err != nil {
		s.logf("warning: %s: opening a queue file: %v", s.namaddr, err)
		return err
	}
	s.msg = msg
	s.snap.QueueID = msg.ID()
	s.logClient()
	return nil
}

// handoffReply is the reply for a failed hand-off: the ReplyError's, or
// Postfix's queue file error.
func handoffReply(err error) restrictions.Reply {
	var re *ReplyError
	if errors.As(err, &re) && re.Reply.Code >= 400 {
		return re.Reply
	}
	return restrictions.Reply{Code: 451, DSN: "4.3.0", Text: "Error: queue file write error"}
}

func parseNotify(v string) ([]string, bool) {
	if v == "" {
		return nil, false
	}
	parts := strings.Split(strings.ToUpper(v), ",")
	for _, p := range parts {
		switch p {
		case "NEVER":
			if len(parts) > 1 {
				return nil, false
			}
		case "SUCCESS", "FAILURE", "DELAY":
		default:
			return nil, false
		}
	}
	return parts, true
}

// xtextDecode decodes RFC 3461 §4 xtext ("+2B" escapes).
func xtextDecode(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || s[i+1] > 'F' || s[i+2] > 'F' {
				return "", false
			}
			b.WriteByte(byte(n))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func (s *session) cmdRset(arg string) (bool, error) {
	if arg != "" {
		s.reply("501 5.5.4 Syntax: RSET")
		return false, nil
	}
	s.abortTxn()
	s.reply("250 2.0.0 Ok")
	return true, nil
}

func (s *session) cmdNoop(string) (bool, error) {
	s.reply("250 2.0.0 Ok")
	return true, nil
}

func (s *session) cmdQuit(string) (bool, error) {
	s.reply("221 2.0.0 Bye")
	return true, errClose
}

func (s *session) cmdVrfy(arg string) (bool, error) {
	if s.cfg.DisableVRFY {
		s.reply("502 5.5.1 VRFY command is disabled")
		return false, nil
	}
	if arg == "" {
		s.reply("501 5.5.4 Syntax: VRFY address [SMTPUTF8]")
		return false, nil
	}
	if s.cfg.Checker != nil {
		a, r, ok := s.cfg.Checker.ParseEnvelope(s.ctx, restrictions.StageRecipient, arg, false)
		if !ok {
			if r.Code == 501 {
				s.logf("warning: Illegal address syntax from %s in VRFY command: %s", s.namaddr, printable(arg))
			}
			s.reply(r.String())
			return false, nil
		}
		saved := s.snap
		s.snap.Recipient = a
		d := s.check(restrictions.StageRecipient, "VRFY")
		txn := s.snap.Txn
		s.snap = saved
		s.snap.Txn = txn
		if !d.Accepted() {
			return false, s.replyDecision(d)
		}
	}
	s.reply("252 2.0.0 " + arg)
	return true, nil
}

func (s *session) cmdEtrn(arg string) (bool, error) {
	if s.cfg.Role == RoleLMTP {
		s.reply("502 5.5.2 Error: command not recognized")
		return false, nil
	}
	if s.inMail {
		s.reply("503 Error: MAIL transaction in progress")
		return false, nil
	}
	if s.cfg.HeloRequired && s.snap.Helo == "" {
		s.reply("503 Error: send HELO/EHLO first")
		return false, nil
	}
	if arg == "" || strings.ContainsAny(arg, " \t") {
		s.reply("500 Syntax: ETRN domain")
		return false, nil
	}
	s.snap.ETRNDomain = arg
	if s.cfg.Checker != nil {
		d := s.check(restrictions.StageETRN, "ETRN")
		if !d.Accepted() {
			s.snap.ETRNDomain = ""
			return false, s.replyDecision(d)
		}
	}
	s.snap.ETRNDomain = ""
	// "@domain" asks for the domain's subdomains too, "#queue" for a
	// queue (RFC 1985 §5); Postfix flushes by the name without the mark.
	site := strings.TrimLeft(arg, "@#")
	ok := false
	if s.cfg.FastFlushDomains != nil && !strings.HasPrefix(arg, "#") {
		ok, _ = s.cfg.FastFlushDomains.Match(s.ctx, site)
	}
	if !ok {
		s.reply("459 <" + site + ">: service unavailable")
		return false, nil
	}
	if s.cfg.Flush != nil {
		if err := s.cfg.Flush(s.ctx, site); err != nil {
			s.logf("warning: %s: ETRN %s: %v", s.namaddr, site, err)
			s.reply("458 Unable to queue messages")
			return false, nil
		}
	}
	s.reply("250 Queuing started")
	return true, nil
}

// forbiddenCommand reports whether the command shows a client that does not
// speak SMTP: a header line, or a verb in smtpd_forbidden_commands.
func (s *session) forbiddenCommand(verb string, line []byte) bool {
	if handlers[verb] != nil {
		return false
	}
	if isHeaderLine(string(line)) {
		return true
	}
	if s.srv.forbidden == nil {
		return false
	}
	// The list is matched against the verb as the client wrote it.
	raw := strings.TrimLeft(string(line), " \t")
	if i := strings.IndexAny(raw, " \t"); i >= 0 {
		raw = raw[:i]
	}
	ok, err := s.srv.forbidden.Match(s.ctx, raw)
	if err != nil {
		s.logf("warning: smtpd_forbidden_commands lookup error for %q: %v", raw, err)
		return false
	}
	return ok
}

package milter

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
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/restrictions"
)

// Envelope is what the milters learn about the SMTP session and the
// message besides its content.
type Envelope struct {
	ClientName string // verified client name, or "unknown"
	ClientAddr string // IP address; "" for locally submitted mail
	ClientPort int
	Helo       string
	Sender     string   // internal form; "" = null sender
	Recipients []string // internal form
	QueueID    string   // the "i" macro
	// Macros are further macro values by name, braces included as in
	// "{auth_authen}", "{daemon_addr}", "{rcpt_mailer}". They override the
	// values Run derives from the fields above and Config.Values.
	Macros map[string]string
	// SenderArgs and RecipientArgs are the ESMTP parameters of MAIL FROM
	// and of each RCPT TO ("SIZE=1234", "NOTIFY=NEVER"); RecipientArgs is
	// parallel to Recipients and may be shorter.
	SenderArgs    []string
	RecipientArgs [][]string
	// Local marks mail submitted on this host (sendmail, pickup:
	// non_smtpd_milters). Postfix then shows the milters a client
	// "localhost" at 127.0.0.1 (port 0) that said HELO localhost, and the
	// queue ID from MAIL on; the client fields above are ignored.
	Local bool
	// SkipFirstHeader keeps the message's first header from the milters:
	// it is the Received: header the MTA added itself, which Postfix does
	// not show to milters. It still counts in SMFIR_INSHEADER positions,
	// as in Postfix (index 0 inserts above it, 1 just below it).
	SkipFirstHeader bool
}

// Session is one message on its way through all configured milters: the
// connections to them, what each still wants to see and the message as the
// milters before changed it. Config.Run makes one per message.
type Session struct {
	cfg    *Config
	specs  []Spec
	env    Envelope
	log    *slog.Logger
	macros *gomilter.MacroBag
	conns  []*conn
	msg    *message
	res    *Result
	over   bool // the message has a final verdict: no more events to anyone
}

// conn is one milter's connection.
type conn struct {
	st   settings
	nc   *timedConn
	cs   *gomilter.ClientSession
	done bool // accepted, failed or closed: it gets no more events
}

// Run sends one message through the milters in order: connect, HELO, MAIL,
// each RCPT, DATA, the headers, end of headers, the body in chunks and end
// of message, every stage to all milters in turn and the content to each
// milter as the ones before it left it. It returns what they decided.
//
// A milter that cannot be reached, times out or breaks the protocol is
// handled by its default_action (milter_default_action). Run returns an
// error only when msg cannot be read, env has no recipients, a
// smtpd_milter_maps lookup fails (defer the message), or ctx ends.
func (c *Config) Run(ctx context.Context, env Envelope, msg io.Reader) (*Result, error) {
	specs, err := c.milters(ctx, &env)
	if err != nil {
		// Postfix defers the mail when a table fails.
		return nil, err
	}
	if len(env.Recipients) == 0 && len(specs) > 0 {
		// The protocol has no DATA without a RCPT (for sendmail -t, pass
		// the recipients taken from the headers).
		return nil, errors.New("milter: a message without recipients")
	}
	m, err := readMessage(msg)
	if err != nil {
		return nil, err
	}
	if env.SkipFirstHeader && len(m.headers) > 0 {
		m.headers[0].hidden = true
	}
	s := &Session{cfg: c, specs: specs, env: env, log: c.Logger, msg: m, res: &Result{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("queue_id", env.QueueID)
	defer s.close()
	if err := s.run(ctx); err != nil {
		return nil, err
	}
	return s.res, nil
}

func (s *Session) run(ctx context.Context) error {
	s.setMacros()
	for _, spec := range s.specs {
		s.open(ctx, s.cfg.settingsFor(spec))
		if s.over {
			return ctx.Err()
		}
	}
	family, port, addr := s.clientFamily()
	// The connect event names the client; an unknown name is sent as the
	// bracketed address (as Postfix and Sendmail do), and local submission
	// as "localhost".
	name := s.env.ClientName
	switch {
	case family == gomilter.FamilyUnknown || s.env.Local:
		name = "localhost"
	case name == "" || name == "unknown":
		name = "[" + addr + "]"
	}
	helo := s.env.Helo
	if s.env.Local && helo == "" {
		helo = "localhost"
	}
	stages := []struct {
		stage string
		call  func(c *conn) (*gomilter.Action, error)
	}{
		{"CONNECT", func(c *conn) (*gomilter.Action, error) { return c.cs.Conn(name, family, port, addr) }},
		{"EHLO", func(c *conn) (*gomilter.Action, error) { return c.cs.Helo(helo) }},
		{"MAIL", func(c *conn) (*gomilter.Action, error) {
			return c.cs.Mail(quote(s.env.Sender), joinArgs(s.env.SenderArgs))
		}},
	}
	for _, st := range stages {
		if s.each(ctx, st.stage, st.call); s.over {
			return ctx.Err()
		}
	}

	// RCPT: a milter that rejects a recipient stops it from reaching the
	// milters after it, as Postfix's smtpd would have refused it.
	accepted := 0
	for i, rcpt := range s.env.Recipients {
		s.setRcptMacros(rcpt)
		var args []string
		if i < len(s.env.RecipientArgs) {
			args = s.env.RecipientArgs[i]
		}
		var reject *restrictions.Reply
		for _, c := range s.conns {
			if c.done || s.over {
				continue
			}
			c.nc.setTimeout(c.st.commandTimeout)
			act, err := c.cs.Rcpt(quote(rcpt), joinArgs(args))
			if err != nil {
				s.fail(ctx, c, "RCPT", err)
				continue
			}
			if r := s.rcptAction(ctx, c, act); r != nil {
				reject = r
				s.res.RejectedRecipients = append(s.res.RejectedRecipients,
					RecipientReject{Addr: rcpt, Reply: *r, Milter: c.st.spec.Name})
				break
			}
		}
		if s.over {
			return ctx.Err()
		}
		if reject == nil {
			accepted++
		} else if accepted == 0 && i == len(s.env.Recipients)-1 {
			// No recipient left: the message cannot be accepted.
			s.verdict(nil, "RCPT", reject)
			return ctx.Err()
		}
	}

	s.setQueueID()
	if s.each(ctx, "DATA", func(c *conn) (*gomilter.Action, error) { return c.cs.DataStart() }); s.over {
		return ctx.Err()
	}

	// The content goes to one milter after the other, each seeing the
	// changes of those before it.
	for _, c := range s.conns {
		if c.done || s.over {
			continue
		}
		s.content(ctx, c)
	}
	return ctx.Err()
}

// open connects to one milter and negotiates. A failure applies the
// milter's default action.
func (s *Session) open(ctx context.Context, st settings) {
	c := &conn{st: st}
	s.conns = append(s.conns, c)
	opts := []gomilter.Option{
		gomilter.WithDialer(dialerFunc(func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: st.connectTimeout}
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c.nc = newTimedConn(ctx, nc, st.connectTimeout)
			return c.nc, nil
		})),
		// Deadlines are the timedConn's job: one per stage kind, as
		// Postfix has (connect, command, content).
		gomilter.WithReadTimeout(0),
		gomilter.WithWriteTimeout(0),
		gomilter.WithMaximumVersion(uint32(st.protocol)),
		gomilter.WithoutDefaultMacros(),
	}
	if st.protocol >= 6 {
		opts = append(opts, gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	} else {
		// Before version 6 there are no SMFIR_CHGFROM, SMFIR_ADDRCPT_PAR,
		// symbol lists or the newer protocol steps (milter_protocol).
		proto := gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom | gomilter.OptNoRcptTo |
			gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH
		if st.protocol >= 3 {
			proto |= gomilter.OptNoUnknown
		}
		if st.protocol >= 4 {
			proto |= gomilter.OptNoData
		}
		opts = append(opts, gomilter.WithProtocols(proto), gomilter.WithActions(gomilter.OptAddHeader|
			gomilter.OptChangeBody|gomilter.OptAddRcpt|gomilter.OptRemoveRcpt|gomilter.OptChangeHeader|gomilter.OptQuarantine))
	}
	mac := s.cfg.Macros
	if mac == nil {
		mac = DefaultMacros()
	}
	for _, sm := range []struct {
		stage gomilter.MacroStage
		names []string
	}{
		{gomilter.StageConnect, mac.Connect}, {gomilter.StageHelo, mac.Helo},
		{gomilter.StageMail, mac.Mail}, {gomilter.StageRcpt, mac.Rcpt},
		{gomilter.StageData, mac.Data}, {gomilter.StageEOH, mac.EndOfHeaders},
		{gomilter.StageEOM, mac.EndOfData},
	} {
		opts = append(opts, gomilter.WithMacroRequest(sm.stage, sm.names))
	}
	cs, err := gomilter.NewClient(st.spec.Network, st.spec.Address, opts...).Session(s.macros)
	if err != nil {
		if c.nc != nil {
			c.nc.Close()
		}
		s.fail(ctx, c, "CONNECT", fmt.Errorf("connecting: %w", err))
		return
	}
	c.cs = cs
}

// each sends one SMTP stage to every milter still listening.
func (s *Session) each(ctx context.Context, stage string, call func(c *conn) (*gomilter.Action, error)) {
	for _, c := range s.conns {
		if c.done || s.over {
			continue
		}
		c.nc.setTimeout(c.st.commandTimeout)
		act, err := call(c)
		if err != nil {
			s.fail(ctx, c, stage, err)
			continue
		}
		s.action(ctx, c, stage, act)
	}
}

// content sends the headers, end of headers, body and end of message to
// one milter and applies the modifications it returns.
func (s *Session) content(ctx context.Context, c *conn) {
	c.nc.setTimeout(c.st.contentTimeout)
	leadSpace := c.cs.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	for _, h := range s.msg.headers {
		if h.hidden {
			continue
		}
		act, err := c.cs.HeaderField(strings.TrimRight(h.name, " \t"), h.value(leadSpace), nil)
		if err != nil {
			s.fail(ctx, c, "HEADER", err)
			return
		}
		if s.action(ctx, c, "HEADER", act); c.done || s.over {
			return
		}
	}
	act, err := c.cs.HeaderEnd()
	if err != nil {
		s.fail(ctx, c, "END-OF-HEADERS", err)
		return
	}
	if s.action(ctx, c, "END-OF-HEADERS", act); c.done || s.over {
		return
	}
	// Body chunks of at most 65535 bytes, the size every milter accepts.
	body := s.msg.body
	for len(body) > 0 && !c.cs.Skip() {
		n := min(len(body), int(gomilter.DataSize64K))
		act, err := c.cs.BodyChunk(body[:n])
		if err != nil {
			s.fail(ctx, c, "BODY", err)
			return
		}
		if s.action(ctx, c, "BODY", act); c.done || s.over {
			return
		}
		body = body[n:]
	}
	mods, act, err := c.cs.End()
	if err != nil {
		s.fail(ctx, c, "END-OF-MESSAGE", err)
		return
	}
	const stage = "END-OF-MESSAGE"
	// Modifications count only when the milter accepts or continues at
	// the end (libmilter sends them before the final reply; Postfix drops
	// them when the reply rejects or discards the message).
	if act.Type == gomilter.ActionAccept || act.Type == gomilter.ActionContinue {
		s.modify(c, mods)
	}
	s.action(ctx, c, stage, act)
	c.done = true
}

// modify turns the library's modification actions into Mods, applies the
// content changes to the message the next milter sees and records them.
func (s *Session) modify(c *conn, acts []gomilter.ModifyAction) {
	name := c.st.spec.Name
	var body *Mod
	// Without SMFIP_HDR_LEADSPC the milter sends header text without the
	// space after the colon and Postfix writes "Name: text".
	lead := " "
	if c.cs.ProtocolOption(gomilter.OptHeaderLeadingSpace) {
		lead = ""
	}
	for _, a := range acts {
		mod := Mod{Milter: name}
		switch a.Type {
		case gomilter.ActionAddHeader:
			mod.Kind, mod.Name, mod.Value = AddHeader, a.HeaderName, lead+a.HeaderValue
		case gomilter.ActionInsertHeader:
			mod.Kind, mod.Name, mod.Value, mod.Index = InsertHeader, a.HeaderName, lead+a.HeaderValue, int(a.HeaderIndex)
		case gomilter.ActionChangeHeader:
			mod.Kind, mod.Name, mod.Value, mod.Index = ChangeHeader, a.HeaderName, lead+a.HeaderValue, int(a.HeaderIndex)
			if a.HeaderValue == "" {
				mod.Kind, mod.Value = DeleteHeader, ""
			}
		case gomilter.ActionAddRcpt:
			mod.Kind, mod.Addr, mod.Args = AddRecipient, envAddr(a.Rcpt), splitArgs(a.RcptArgs)
		case gomilter.ActionDelRcpt:
			mod.Kind, mod.Addr = DeleteRecipient, envAddr(a.Rcpt)
		case gomilter.ActionChangeFrom:
			mod.Kind, mod.Addr, mod.Args = ChangeSender, envAddr(a.From), splitArgs(a.FromArgs)
		case gomilter.ActionReplaceBody:
			// A new body comes in as many SMFIR_REPLBODY packets as it
			// needs; together they are one replacement.
			if body == nil {
				s.res.Mods = append(s.res.Mods, Mod{Kind: ReplaceBody, Milter: name})
				body = &s.res.Mods[len(s.res.Mods)-1]
				s.msg.body = nil
			}
			body.Body = append(body.Body, a.Body...)
			continue
		case gomilter.ActionQuarantine:
			s.res.Hold = true
			s.res.HoldReason = a.Reason
			if a.Reason == "" {
				s.res.HoldReason = holdReason
			}
			s.log.Info("milter-hold", "milter", name, "reason", a.Reason)
			continue
		default:
			continue
		}
		if body != nil {
			// The body replacement is complete once another action comes.
			s.msg.apply(*body)
			body = nil
		}
		s.res.Mods = append(s.res.Mods, mod)
		s.msg.apply(mod)
		if mod.Kind == DeleteRecipient || mod.Kind == AddRecipient || mod.Kind == ChangeSender {
			s.log.Debug("milter modification", "milter", name, "action", mod.Kind.String(), "addr", mod.Addr)
		}
	}
	if body != nil {
		s.msg.apply(*body)
	}
}

// action handles a milter's reply at a stage other than RCPT.
func (s *Session) action(ctx context.Context, c *conn, stage string, act *gomilter.Action) {
	switch act.Type {
	case gomilter.ActionContinue, gomilter.ActionSkip:
	case gomilter.ActionAccept:
		// Accept before the end: this milter wants nothing more of the
		// message (and makes no changes).
		c.done = true
	case gomilter.ActionDiscard:
		s.res.Discard = true
		s.res.Stage, s.res.Milter = stage, c.st.spec.Name
		s.over = true
		s.log.Info("milter-discard", "stage", stage, "milter", c.st.spec.Name)
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		r, err := s.reply(act)
		if err != nil {
			// A malformed reply is a milter failure (Postfix: "malformed
			// reply").
			s.fail(ctx, c, stage, err)
			return
		}
		s.verdict(c, stage, &r)
	}
}

// rcptAction handles a milter's reply to one RCPT; it returns the reply
// when the recipient is rejected.
func (s *Session) rcptAction(ctx context.Context, c *conn, act *gomilter.Action) *restrictions.Reply {
	switch act.Type {
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		r, err := s.reply(act)
		if err != nil {
			s.fail(ctx, c, "RCPT", err)
			return nil
		}
		s.log.Info("milter-reject", "stage", "RCPT", "milter", c.st.spec.Name, "reply", r.String())
		return &r
	case gomilter.ActionDiscard:
		// Discard at RCPT discards the whole message.
		s.action(ctx, c, "RCPT", act)
	case gomilter.ActionAccept:
		// Accept of a recipient accepts just that recipient.
	}
	return nil
}

// reply is the SMTP reply for a reject, tempfail or replycode response; an
// error for a malformed reply.
func (s *Session) reply(act *gomilter.Action) (restrictions.Reply, error) {
	switch act.Type {
	case gomilter.ActionReject:
		return replyReject, nil
	case gomilter.ActionTempFail:
		return replyTempfail, nil
	}
	return ParseReply(act.SMTPReply)
}

// verdict ends the message with a reject or deferral.
func (s *Session) verdict(c *conn, stage string, r *restrictions.Reply) {
	s.res.Reject = r
	s.res.Stage = stage
	if c != nil {
		s.res.Milter = c.st.spec.Name
	}
	s.over = true
	s.log.Info("milter-reject", "stage", stage, "milter", s.res.Milter, "reply", r.String())
}

// fail applies the milter's default action after an error: its connection
// is closed and it gets no more events.
func (s *Session) fail(ctx context.Context, c *conn, stage string, err error) {
	c.done = true
	if c.cs != nil {
		c.cs.Close()
	} else if c.nc != nil {
		c.nc.Close()
	}
	if ctx.Err() != nil {
		s.over = true
		return
	}
	name := c.st.spec.Name
	s.log.Warn("milter failed", "milter", name, "stage", stage, "err", err, "default_action", c.st.defaultAction)
	switch c.st.defaultAction {
	case ActionAccept:
	case ActionQuarantine:
		s.res.Hold = true
		if s.res.HoldReason == "" {
			s.res.HoldReason = holdReason
		}
	case ActionReject:
		r := replyCommReject
		if !isCommError(err) {
			r = replyConfError
		}
		s.verdict(c, stage, &r)
	default:
		r := replyTempfail
		if !isCommError(err) {
			r = replyConfError
		}
		s.verdict(c, stage, &r)
	}
}

// holdReason is Postfix's log text for a hold a milter caused.
const holdReason = "milter triggers HOLD action"

// isCommError tells a failed, broken or timed-out connection from a
// milter that breaks the protocol: Postfix answers them differently.
func isCommError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) || errors.Is(err, errCanceled)
}

func (s *Session) close() {
	for _, c := range s.conns {
		if c.cs != nil {
			c.nc.setTimeout(c.st.commandTimeout)
			c.cs.Close()
		} else if c.nc != nil {
			c.nc.Close()
		}
		if c.nc != nil {
			c.nc.stop()
		}
	}
}

// clientFamily is the connect event's address family, port and address.
func (s *Session) clientFamily() (gomilter.ProtoFamily, uint16, string) {
	if s.env.Local {
		return gomilter.FamilyInet, 0, "127.0.0.1"
	}
	a, err := netip.ParseAddr(s.env.ClientAddr)
	if err != nil {
		// Local submission (sendmail, pickup): Postfix sends family
		// unknown with client name "localhost".
		return gomilter.FamilyUnknown, 0, ""
	}
	a = a.Unmap()
	if a.Is4() {
		return gomilter.FamilyInet, uint16(s.env.ClientPort), a.String()
	}
	return gomilter.FamilyInet6, uint16(s.env.ClientPort), a.String()
}

// setMacros fills the macro values known for the whole message.
func (s *Session) setMacros() {
	b := gomilter.NewMacroBag()
	mac := s.cfg.Macros
	if mac == nil {
		mac = DefaultMacros()
	}
	for k, v := range mac.Defaults {
		b.Set(k, v)
	}
	for k, v := range s.cfg.Values {
		if v != "" {
			b.Set(k, v)
		}
	}
	e := s.env
	if e.Local {
		e.ClientName, e.ClientAddr, e.ClientPort = "localhost", "127.0.0.1", 0
		if e.Helo == "" {
			e.Helo = "localhost"
		}
	}
	set := func(k, v string) {
		if v != "" {
			b.Set(k, v)
		}
	}
	// Postfix knows the queue ID only from DATA on and sends "i" from then
	// (checked against Postfix 3.7); see the DATA stage in run.
	set("{client_addr}", e.ClientAddr)
	set("{client_name}", e.ClientName)
	if e.ClientPort != 0 {
		set("{client_port}", strconv.Itoa(e.ClientPort))
	}
	if e.ClientAddr != "" {
		// "_" is the client as Postfix logs it: name [address].
		name := e.ClientName
		if name == "" {
			name = "unknown"
		}
		set("_", name+" ["+e.ClientAddr+"]")
	}
	set("s", e.Helo)
	// {mail_addr} is the sender as it appeared in MAIL FROM, without <>.
	b.Set("{mail_addr}", quote(e.Sender))
	// Postfix sets {mail_host} and {rcpt_host} from smtpd's address
	// resolution; local submission has none.
	if _, dom, ok := cutLast(e.Sender, "@"); ok && !e.Local {
		set("{mail_host}", dom)
	}
	if e.Local {
		set("{daemon_addr}", "127.0.0.1")
	}
	for k, v := range e.Macros {
		if k != "i" {
			b.Set(k, v)
		}
	}
	s.macros = b
	if e.Local {
		s.setQueueID()
	}
}

// setQueueID makes "i" known: Postfix's smtpd learns the queue ID at
// DATA, local submission has it from the start.
func (s *Session) setQueueID() {
	if id, ok := s.env.Macros["i"]; ok {
		s.macros.Set("i", id)
	} else if s.env.QueueID != "" {
		s.macros.Set("i", s.env.QueueID)
	}
}

func (s *Session) setRcptMacros(rcpt string) {
	s.macros.Set("{rcpt_addr}", quote(rcpt))
	if _, dom, ok := cutLast(rcpt, "@"); ok && !s.env.Local {
		s.macros.Set("{rcpt_host}", dom)
	}
	if v, ok := s.env.Macros["{rcpt_mailer}"]; ok {
		s.macros.Set("{rcpt_mailer}", v)
	}
}

// quote is the external form of an envelope address; the null sender
// stays empty (sent as "<>").
func quote(a string) string {
	if a == "" {
		return ""
	}
	return address.Quote(a)
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// joinArgs packs ESMTP parameters for the library, which writes its
// argument as one NUL-terminated string: NULs between the parameters make
// them the separate strings Postfix and Sendmail send.
func joinArgs(args []string) string {
	return strings.Join(args, "\x00")
}

func splitArgs(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == 0 }) {
		out = append(out, f)
	}
	return out
}

// envAddr turns an address a milter sent ("<a@b>", `"x y"@b`, "<>") into
// internal form. Like Postfix, which runs it through its RFC 822
// tokenizer, white space outside quotes is dropped.
func envAddr(a string) string {
	a = gomilter.RemoveAngle(strings.TrimSpace(a))
	var b strings.Builder
	quoted, escaped := false, false
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ' ' || c == '\t'):
			continue
		}
		b.WriteByte(c)
	}
	return address.Unquote(b.String())
}

type dialerFunc func(network, addr string) (net.Conn, error)

func (f dialerFunc) Dial(network, addr string) (net.Conn, error) { return f(network, addr) }

// timedConn gives every read and write a deadline of the current timeout
// (an idle timeout: a milter that sends progress reports keeps the
// connection alive, as in Postfix), and fails at once when ctx ends.
type timedConn struct {
	net.Conn
	timeout  atomic.Int64
	canceled atomic.Bool
	stopCtx  func() bool
}

func newTimedConn(ctx context.Context, nc net.Conn, timeout time.Duration) *timedConn {
	c := &timedConn{Conn: nc}
	c.timeout.Store(int64(timeout))
	c.stopCtx = context.AfterFunc(ctx, func() {
		c.canceled.Store(true)
		nc.SetDeadline(time.Unix(1, 0))
	})
	return c
}

var errCanceled = errors.New("milter: canceled")

func (c *timedConn) setTimeout(d time.Duration) {
	if c != nil {
		c.timeout.Store(int64(d))
	}
}

func (c *timedConn) stop() { c.stopCtx() }

func (c *timedConn) Read(p []byte) (int, error) {
	if t := time.Duration(c.timeout.Load()); t > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(t))
	}
	if c.canceled.Load() {
		return 0, errCanceled
	}
	return c.Conn.Read(p)
}

func (c *timedConn) Write(p []byte) (int, error) {
	if t := time.Duration(c.timeout.Load()); t > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(t))
	}
	if c.canceled.Load() {
		return 0, errCanceled
	}
	return c.Conn.Write(p)
}

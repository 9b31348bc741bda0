package smtpclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/address"
)

// Envelope is one mail transaction.
type Envelope struct {
	// From is the sender in internal form; "" is the null sender.
	From string
	// Size is the message size for SIZE= (RFC 1870); 0 sends none.
	Size int64
	// Body is "8BITMIME" or "7BIT" (BODY=, RFC 6152); "" sends none.
	Body string
	// SMTPUTF8 asks for SMTPUTF8 (RFC 6531).
	SMTPUTF8 bool
	// Ret and EnvID are the DSN MAIL parameters (RFC 3461), sent only
	// when the server offers DSN.
	Ret, EnvID string
	Rcpts      []Rcpt
}

// Rcpt is one recipient.
type Rcpt struct {
	Addr string
	// Notify ("NEVER" or some of "SUCCESS", "FAILURE", "DELAY") and ORCPT
	// ("rfc822;user@example.com") are sent only when the server offers DSN.
	Notify []string
	ORCPT  string
}

// Result holds the replies of one transaction. A reply with Code 0 was
// not received (the command was not sent or the session broke first).
type Result struct {
	Mail Reply
	// Rcpt has one reply per Envelope.Rcpts entry.
	Rcpt []Reply
	// Data is the reply to the DATA command (354 when the body was sent).
	Data Reply
	// Final has, per Envelope.Rcpts entry, the reply to the end of data:
	// the one reply of SMTP for every accepted recipient, or each
	// recipient's own reply in LMTP. Code 0 for recipients not accepted.
	Final []Reply
	// Downgraded reports that 8bit MIME parts were sent as
	// quoted-printable.
	Downgraded bool
}

// Accepted counts the recipients whose RCPT got a 2xx.
func (r *Result) Accepted() int {
	n := 0
	for _, x := range r.Rcpt {
		if x.Code/100 == 2 {
			n++
		}
	}
	return n
}

// SizeError says the message is larger than the server's SIZE limit; Send
// returns it before MAIL FROM (Postfix bounces such mail with 5.3.4).
type SizeError struct{ Size, Limit int64 }

func (e *SizeError) Error() string {
	return fmt.Sprintf("message size %d exceeds size limit %d of server", e.Size, e.Limit)
}

// ErrSMTPUTF8Required is returned by Send, before MAIL FROM, when the
// envelope asks for SMTPUTF8 and has non-ASCII addresses but the server
// does not offer SMTPUTF8 (Postfix bounces with 5.6.7 "SMTPUTF8 is
// required, but was not offered by host").
var ErrSMTPUTF8Required = errors.New("SMTPUTF8 is required, but was not offered")

// ErrServiceClosing is the cause of a session broken by a 421 reply: the
// server announced that it closes the connection. Send returns the replies
// up to the 421 without an error; replies after it have Code 0.
var ErrServiceClosing = errors.New("server closing the connection (421)")

// BodyError is a failure to read the message content (not a network
// error); the session is unusable afterwards, since the server already
// has part of the message.
type BodyError struct{ Err error }

func (e *BodyError) Error() string { return "smtpclient: reading the message: " + e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// MailCommand returns the MAIL FROM command Send would send for env on
// this session.
func (c *Client) MailCommand(env *Envelope) string {
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	b.WriteString(quoteAddr(env.From))
	b.WriteString(">")
	if c.ext.Size && env.Size > 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(env.Size, 10))
	}
	if c.ext.EightBitMIME && env.Body != "" && (strings.EqualFold(env.Body, "8BITMIME") || strings.EqualFold(env.Body, "7BIT")) {
		b.WriteString(" BODY=")
		b.WriteString(strings.ToUpper(env.Body))
	}
	if env.SMTPUTF8 && c.ext.SMTPUTF8 {
		b.WriteString(" SMTPUTF8")
	}
	// Postfix's order: ENVID before RET (mda/smtp oracle_test.go).
	if c.ext.DSN {
		if env.EnvID != "" {
			b.WriteString(" ENVID=")
			b.WriteString(xtext(env.EnvID))
		}
		if env.Ret != "" {
			b.WriteString(" RET=")
			b.WriteString(strings.ToUpper(env.Ret))
		}
	}
	return b.String()
}

// RcptCommand returns the RCPT TO command for r on this session.
func (c *Client) RcptCommand(r *Rcpt) string {
	var b strings.Builder
	b.WriteString("RCPT TO:<")
	b.WriteString(quoteAddr(r.Addr))
	b.WriteString(">")
	// Postfix's order: ORCPT before NOTIFY.
	if c.ext.DSN {
		if r.ORCPT != "" {
			typ, addr, ok := strings.Cut(r.ORCPT, ";")
			if !ok {
				typ, addr = "rfc822", r.ORCPT
			}
			b.WriteString(" ORCPT=")
			b.WriteString(typ)
			b.WriteString(";")
			b.WriteString(xtext(addr))
		}
		if len(r.Notify) > 0 {
			b.WriteString(" NOTIFY=")
			b.WriteString(strings.ToUpper(strings.Join(r.Notify, ",")))
		}
	}
	return b.String()
}

// xtext encodes s as RFC 3461 4 xtext: "+", "=" and characters outside
// "!" to "~" become "+HH".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < '!' || ch > '~' || ch == '+' || ch == '=' {
			fmt.Fprintf(&b, "+%02X", ch)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// quoteAddr turns an internal-form address (unquoted local part) into the
// RFC 5321 form; the null address stays empty.
func quoteAddr(addr string) string {
	if addr == "" {
		return ""
	}
	return address.Quote(addr)
}

func nonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// Send runs one mail transaction: MAIL FROM, one RCPT TO per recipient,
// and, when at least one recipient was accepted, DATA with body streamed
// from r (CRLF or LF lines; dot-stuffed here, line ends made CRLF, lines
// over Options.LineLengthLimit broken). When the server offers PIPELINING
// the commands go in groups (RFC 2920), DATA included.
//
// The replies come back in the Result whatever they are: the caller
// decides what a 4xx or 5xx means for each recipient. The error is for a
// transaction that could not run: *Error (connection lost or timed out,
// with the replies received so far in the Result), *SizeError,
// ErrSMTPUTF8Required, *BodyError. After a rejected MAIL, RCPT or DATA the
// session stays usable (call Reset before the next Send).
func (c *Client) Send(ctx context.Context, env *Envelope, body io.Reader) (*Result, error) {
	defer c.watch(ctx)()
	res := &Result{Rcpt: make([]Reply, len(env.Rcpts)), Final: make([]Reply, len(env.Rcpts))}
	if c.broken != nil {
		return res, c.broken
	}
	if c.ext.SizeLimit > 0 && env.Size > c.ext.SizeLimit {
		return res, &SizeError{Size: env.Size, Limit: c.ext.SizeLimit}
	}
	if env.SMTPUTF8 && !c.ext.SMTPUTF8 {
		need := nonASCII(env.From)
		for _, r := range env.Rcpts {
			need = need || nonASCII(r.Addr)
		}
		if need {
			return res, ErrSMTPUTF8Required
		}
	}
	c.used++
	downgrade := strings.EqualFold(env.Body, "8BITMIME") && !c.ext.EightBitMIME && !c.opts.DisableMIMEConversion

	// The commands and the timeout and stage of each.
	type command struct {
		line    string
		timeout time.Duration
		stage   string
		reply   *Reply
	}
	cmds := []command{{c.MailCommand(env), c.to.Mail, "sending MAIL FROM", &res.Mail}}
	for i := range env.Rcpts {
		cmds = append(cmds, command{c.RcptCommand(&env.Rcpts[i]), c.to.Rcpt, "sending RCPT TO", &res.Rcpt[i]})
	}
	cmds = append(cmds, command{"DATA", c.to.DataInit, "sending DATA command", &res.Data})

	if c.ext.Pipelining {
		for start := 0; start < len(cmds); start += c.opts.PipelineBatch {
			end := min(start+c.opts.PipelineBatch, len(cmds))
			for _, cm := range cmds[start:end] {
				c.write(cm.line)
			}
			if err := c.flush(cmds[start].timeout, cmds[start].stage); err != nil {
				return res, err
			}
			for _, cm := range cmds[start:end] {
				r, err := c.read(cm.timeout, cm.stage)
				if err != nil {
					return res, err
				}
				*cm.reply = r
				if r.Code == 421 {
					// The server is closing the session (RFC 5321
					// 3.8): the later replies will never come.
					c.fail(&Error{Stage: cm.stage, Err: ErrServiceClosing})
					return res, nil
				}
			}
		}
	} else {
		for i, cm := range cmds {
			if i > 0 && res.Mail.Code/100 != 2 {
				break // MAIL rejected: nothing more in this transaction
			}
			if cm.line == "DATA" && res.Accepted() == 0 {
				break
			}
			r, err := c.cmd(cm.timeout, cm.stage, cm.line)
			if err != nil {
				return res, err
			}
			*cm.reply = r
			if r.Code == 421 {
				c.fail(&Error{Stage: cm.stage, Err: ErrServiceClosing})
				return res, nil
			}
		}
	}
	if res.Data.Code != 354 {
		return res, nil
	}
	if res.Accepted() == 0 || res.Mail.Code/100 != 2 {
		// A pipelining server said 354 with nobody to send to: end the
		// (empty) message at once so the session stays in step.
		c.write(".")
		if err := c.flush(c.to.DataDone, "sending end of data -- message may be sent more than once"); err != nil {
			return res, err
		}
		_, err := c.read(c.to.DataDone, "sending end of data -- message may be sent more than once")
		return res, err
	}
	var w lineSink = &dotWriter{c: c, limit: c.opts.LineLengthLimit}
	var dg *downgrader
	if downgrade {
		dg = newDowngrader(w)
		w = dg
	}
	if err := copyLines(w, body); err != nil {
		return res, c.fail(err) // the server is inside DATA: unusable
	}
	if dg != nil {
		if err := dg.finish(); err != nil {
			return res, c.fail(err)
		}
		res.Downgraded = dg.converted
	}
	c.write(".")
	stage := "sending end of data -- message may be sent more than once"
	if err := c.flush(c.to.DataXfer, "sending message body"); err != nil {
		return res, err
	}
	if c.opts.LMTP {
		for i := range env.Rcpts {
			if res.Rcpt[i].Code/100 != 2 {
				continue
			}
			r, err := c.read(c.to.DataDone, stage)
			if err != nil {
				return res, err
			}
			res.Final[i] = r
		}
		return res, nil
	}
	r, err := c.read(c.to.DataDone, stage)
	if err != nil {
		return res, err
	}
	for i := range env.Rcpts {
		if res.Rcpt[i].Code/100 == 2 {
			res.Final[i] = r
		}
	}
	return res, nil
}

// lineSink receives the message one line at a time, without line end.
type lineSink interface {
	line(l []byte) error
}

// maxBodyLine bounds the memory one message line may take; a longer line
// is handed on in pieces (queued mail never has one: cleanup breaks lines
// at line_length_limit).
const maxBodyLine = 1 << 20

// copyLines splits r into lines (LF or CRLF ends) for w. Read errors are
// *BodyError.
func copyLines(w lineSink, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64*1024)
	var long []byte
	for {
		frag, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, frag...)
			if len(long) >= maxBodyLine {
				if werr := w.line(long); werr != nil {
					return werr
				}
				long = long[:0]
			}
			continue
		}
		if len(frag) > 0 || len(long) > 0 {
			l := frag
			if len(long) > 0 {
				long = append(long, frag...)
				l = long
			}
			if n := len(l); n > 0 && l[n-1] == '\n' {
				l = l[:n-1]
				if n := len(l); n > 0 && l[n-1] == '\r' {
					l = l[:n-1]
				}
			}
			if werr := w.line(l); werr != nil {
				return werr
			}
			long = long[:0]
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &BodyError{Err: err}
		}
	}
}

// dotWriter writes lines to the server: dot-stuffed (RFC 5321 4.5.2),
// CRLF-terminated, broken at the line length limit by CRLF SPACE as
// Postfix does (smtp_line_length_limit).
type dotWriter struct {
	c     *Client
	limit int
}

func (d *dotWriter) line(l []byte) error {
	c := d.c
	if c.broken != nil {
		return c.broken
	}
	// Each write that reaches the network gets smtp_data_xfer_timeout.
	// n counts the CRLF SPACE of every break too, so no write reaches
	// the network under a stale deadline.
	if n := len(l) + 8 + 3*len(l)/max(d.limit, 1); c.bw.Available() < n {
		c.deadline(true, c.to.DataXfer)
	}
	if len(l) > 0 && l[0] == '.' {
		c.bw.WriteByte('.')
	}
	for d.limit > 0 && len(l) > d.limit {
		c.bw.Write(l[:d.limit])
		c.bw.WriteString("\r\n ")
		l = l[d.limit:]
	}
	c.bw.Write(l)
	if _, err := c.bw.WriteString("\r\n"); err != nil {
		return c.fail(&Error{Stage: "sending message body", Err: err})
	}
	return nil
}

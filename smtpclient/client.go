package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

var errUnexpectedEOF = io.ErrUnexpectedEOF

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }

// Timeouts are the per-stage limits of Postfix's smtp(8) and lmtp(8)
// (postconf(5) smtp_*_timeout). A zero field takes Postfix's default.
type Timeouts struct {
	Connect  time.Duration // smtp_connect_timeout (30s): TCP connect, used by Dial
	Greeting time.Duration // smtp_helo_timeout (300s): the server's greeting
	Helo     time.Duration // smtp_helo_timeout (300s): EHLO/HELO/LHLO
	StartTLS time.Duration // smtp_starttls_timeout (300s): STARTTLS and the handshake
	Auth     time.Duration // smtp_helo_timeout's neighbour: each AUTH round trip (300s)
	Mail     time.Duration // smtp_mail_timeout (300s)
	Rcpt     time.Duration // smtp_rcpt_timeout (300s)
	DataInit time.Duration // smtp_data_init_timeout (120s): the DATA command
	DataXfer time.Duration // smtp_data_xfer_timeout (180s): each write of the body
	DataDone time.Duration // smtp_data_done_timeout (600s): the reply to "."
	Rset     time.Duration // smtp_rset_timeout (20s)
	Quit     time.Duration // smtp_quit_timeout (300s)
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, 30*time.Second)
	def(&t.Greeting, 300*time.Second)
	def(&t.Helo, 300*time.Second)
	def(&t.StartTLS, 300*time.Second)
	def(&t.Auth, 300*time.Second)
	def(&t.Mail, 300*time.Second)
	def(&t.Rcpt, 300*time.Second)
	def(&t.DataInit, 120*time.Second)
	def(&t.DataXfer, 180*time.Second)
	def(&t.DataDone, 600*time.Second)
	def(&t.Rset, 20*time.Second)
	def(&t.Quit, 300*time.Second)
	return t
}

// Options configure a Client. The zero value speaks SMTP as "localhost"
// with Postfix's default timeouts.
type Options struct {
	// LMTP selects LMTP (RFC 2033): LHLO instead of EHLO, and one reply
	// per accepted recipient after the message.
	LMTP bool
	// LocalName is the EHLO/HELO/LHLO argument (smtp_helo_name,
	// lmtp_lhlo_name); "" means "localhost".
	LocalName string
	// NeverEHLO sends HELO instead of EHLO (smtp_never_send_ehlo).
	NeverEHLO bool
	// Timeouts are the per-stage limits.
	Timeouts Timeouts
	// LineLengthLimit is smtp_line_length_limit (998): longer message
	// lines are broken by inserting CRLF and a space. 0 means 998, a
	// negative value sends lines as they are.
	LineLengthLimit int
	// DisableMIMEConversion is disable_mime_output_conversion: when it is
	// false, an 8BITMIME message sent to a server that does not offer
	// 8BITMIME has its 8bit MIME parts re-encoded as quoted-printable.
	DisableMIMEConversion bool
	// PipelineBatch bounds how many commands are written before their
	// replies are read when the server offers PIPELINING (so neither side's
	// socket buffer can fill up and stall both); 0 means 100.
	PipelineBatch int
}

// Extensions are the ESMTP service extensions a server announced in its
// EHLO or LHLO reply.
type Extensions struct {
	Pipelining          bool     // RFC 2920
	EightBitMIME        bool     // RFC 6152
	DSN                 bool     // RFC 3461
	SMTPUTF8            bool     // RFC 6531
	StartTLS            bool     // RFC 3207
	EnhancedStatusCodes bool     // RFC 2034
	Chunking            bool     // RFC 3030 (announced; postkit sends DATA)
	Size                bool     // RFC 1870: SIZE announced
	SizeLimit           int64    // the SIZE argument; 0 means no limit given
	Auth                []string // AUTH mechanisms, upper case
	// Keywords holds every keyword (upper case) with its parameters.
	Keywords map[string]string
}

func parseExtensions(lines []string) Extensions {
	e := Extensions{Keywords: map[string]string{}}
	for i, l := range lines {
		if i == 0 {
			continue // the greeting line: "name text"
		}
		kw, param, _ := strings.Cut(strings.TrimSpace(l), " ")
		// "AUTH=LOGIN PLAIN" is the pre-RFC form some servers still send.
		if k, p, ok := strings.Cut(kw, "="); ok && strings.EqualFold(k, "AUTH") {
			kw, param = k, strings.TrimSpace(p+" "+param)
		}
		kw = strings.ToUpper(kw)
		if kw == "" {
			continue
		}
		e.Keywords[kw] = param
		switch kw {
		case "PIPELINING":
			e.Pipelining = true
		case "8BITMIME":
			e.EightBitMIME = true
		case "DSN":
			e.DSN = true
		case "SMTPUTF8":
			e.SMTPUTF8 = true
		case "STARTTLS":
			e.StartTLS = true
		case "ENHANCEDSTATUSCODES":
			e.EnhancedStatusCodes = true
		case "CHUNKING":
			e.Chunking = true
		case "SIZE":
			e.Size = true
			if n, err := strconv.ParseInt(strings.TrimSpace(param), 10, 64); err == nil && n > 0 {
				e.SizeLimit = n
			}
		case "AUTH":
			for _, m := range strings.Fields(param) {
				m = strings.ToUpper(m)
				if !containsFold(e.Auth, m) {
					e.Auth = append(e.Auth, m)
				}
			}
		}
	}
	return e
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Error is a failure of the conversation itself: the connection was lost
// or timed out, or the server sent something that is not SMTP. Stage says
// what the client was doing, in the words of Postfix's log ("receiving the
// initial server greeting", "sending RCPT TO", "sending message body").
type Error struct {
	Stage string
	Err   error
}

func (e *Error) Error() string {
	if e.Timeout() {
		return "smtpclient: conversation timed out while " + e.Stage
	}
	return fmt.Sprintf("smtpclient: lost connection while %s: %v", e.Stage, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the stage timed out.
func (e *Error) Timeout() bool {
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout() || errors.Is(e.Err, context.DeadlineExceeded)
}

// ReplyError is a server reply that ended a command's hope: a 4xx or 5xx
// (or an unexpected code). Command names the command in Postfix's words
// ("MAIL FROM command", "RCPT TO command", "DATA command", "end of DATA
// command", "EHLO command", "STARTTLS command", "AUTH command"); it is ""
// for the greeting.
type ReplyError struct {
	Command string
	Reply   Reply
}

func (e *ReplyError) Error() string {
	if e.Command == "" {
		return "smtpclient: server refused to talk: " + e.Reply.String()
	}
	return fmt.Sprintf("smtpclient: server said: %s (in reply to %s)", e.Reply, e.Command)
}

// TLSError is a failed STARTTLS handshake; the connection is unusable.
type TLSError struct{ Err error }

func (e *TLSError) Error() string { return "smtpclient: TLS handshake failed: " + e.Err.Error() }
func (e *TLSError) Unwrap() error { return e.Err }

// Client is one SMTP or LMTP session. It is not safe for concurrent use.
type Client struct {
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	opts     Options
	to       Timeouts
	greeting Reply
	helo     Reply
	heloName string
	ext      Extensions
	esmtp    bool
	tls      bool
	tlsState tls.ConnectionState
	authed   string
	broken   error
	used     int

	// mu guards watching: the watch of the operation under way. Once its
	// context is cancelled, every deadline the operation sets is in the
	// past, so a later stage cannot lift the cancellation.
	mu       sync.Mutex
	watching *watcher
}

type watcher struct{ cancelled bool }

// Dial connects to addr ("host:port", or a path for network "unix")
// within Timeouts.Connect and reads the greeting (see NewClient).
func Dial(ctx context.Context, network, addr string, opts Options) (*Client, error) {
	to := opts.Timeouts.withDefaults()
	d := net.Dialer{Timeout: to.Connect}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c, err := NewClient(ctx, conn, opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// NewClient starts a session on conn: it reads the server's greeting. A
// greeting other than 2xx comes back as a *ReplyError with Command "" and
// the connection left open (the caller closes it; Postfix sends QUIT
// first).
func NewClient(ctx context.Context, conn net.Conn, opts Options) (*Client, error) {
	c := &Client{conn: conn, opts: opts, to: opts.Timeouts.withDefaults()}
	if c.opts.LocalName == "" {
		c.opts.LocalName = "localhost"
	}
	if c.opts.LineLengthLimit == 0 {
		c.opts.LineLengthLimit = 998
	}
	if c.opts.PipelineBatch <= 0 {
		c.opts.PipelineBatch = 100
	}
	c.br = bufio.NewReaderSize(conn, 4096)
	c.bw = bufio.NewWriterSize(conn, 32*1024)
	if tc, ok := conn.(*tls.Conn); ok {
		c.tls, c.tlsState = true, tc.ConnectionState()
	}
	defer c.watch(ctx)()
	r, err := c.read(c.to.Greeting, "receiving the initial server greeting")
	if err != nil {
		return nil, err
	}
	c.greeting = r
	if r.Code/100 != 2 {
		return c, &ReplyError{Reply: r}
	}
	return c, nil
}

// watch makes a cancelled ctx end whatever I/O is under way.
func (c *Client) watch(ctx context.Context) func() {
	if ctx.Done() == nil {
		return func() {}
	}
	w := &watcher{}
	c.mu.Lock()
	c.watching = w
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.watching == w {
			w.cancelled = true
			c.conn.SetDeadline(time.Unix(1, 0))
		}
	})
	return func() {
		stop()
		c.mu.Lock()
		if c.watching == w {
			c.watching = nil
		}
		c.mu.Unlock()
	}
}

// deadline sets the read or write deadline to now+timeout, or in the past
// when the operation's context is cancelled.
func (c *Client) deadline(write bool, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := time.Now().Add(timeout)
	if c.watching != nil && c.watching.cancelled {
		t = time.Unix(1, 0)
	}
	if write {
		c.conn.SetWriteDeadline(t)
	} else {
		c.conn.SetReadDeadline(t)
	}
}

// Conn is the connection (a *tls.Conn after StartTLS).
func (c *Client) Conn() net.Conn { return c.conn }

// Greeting is the server's greeting.
func (c *Client) Greeting() Reply { return c.greeting }

// HelloReply is the reply to the last EHLO, HELO or LHLO.
func (c *Client) HelloReply() Reply { return c.helo }

// ServerName is the first word of the EHLO/HELO/LHLO reply: the name the
// server gives itself (Postfix compares it with its own name to find mail
// loops).
func (c *Client) ServerName() string {
	if len(c.helo.Lines) == 0 {
		return ""
	}
	name, _, _ := strings.Cut(c.helo.Lines[0], " ")
	return name
}

// Extensions are the extensions of the last EHLO/LHLO reply (none after
// HELO).
func (c *Client) Extensions() Extensions { return c.ext }

// TLSConnectionState returns the TLS state once STARTTLS succeeded (or
// when the connection given to NewClient was TLS).
func (c *Client) TLSConnectionState() (tls.ConnectionState, bool) { return c.tlsState, c.tls }

// AuthUser is the user name of a successful Auth, "" before.
func (c *Client) AuthUser() string { return c.authed }

// Transactions counts the mail transactions Send has run on this session
// (Postfix's conn_use).
func (c *Client) Transactions() int { return c.used }

// Broken returns the error that made the session unusable, nil while it is
// usable.
func (c *Client) Broken() error { return c.broken }

func (c *Client) fail(err error) error {
	if c.broken == nil {
		c.broken = err
	}
	return err
}

func (c *Client) read(timeout time.Duration, stage string) (Reply, error) {
	if c.broken != nil {
		return Reply{}, c.broken
	}
	c.deadline(false, timeout)
	r, err := ReadReply(c.br)
	if err != nil {
		return r, c.fail(&Error{Stage: stage, Err: err})
	}
	return r, nil
}

// write queues a command line; flush sends what is queued.
func (c *Client) write(line string) {
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
}

func (c *Client) flush(timeout time.Duration, stage string) error {
	if c.broken != nil {
		return c.broken
	}
	c.deadline(true, timeout)
	if err := c.bw.Flush(); err != nil {
		return c.fail(&Error{Stage: stage, Err: err})
	}
	return nil
}

// cmd sends one command and reads its reply.
func (c *Client) cmd(timeout time.Duration, stage, line string) (Reply, error) {
	c.write(line)
	if err := c.flush(timeout, stage); err != nil {
		return Reply{}, err
	}
	return c.read(timeout, stage)
}

// Hello sends EHLO (LHLO for LMTP) and records the extensions. When the
// server rejects EHLO (4xx or 5xx), it falls back to HELO, as Postfix does;
// with Options.NeverEHLO it sends HELO only. A rejection comes back as a
// *ReplyError with Command "EHLO command" (or "HELO command", "LHLO
// command").
func (c *Client) Hello(ctx context.Context) error {
	defer c.watch(ctx)()
	verb := "EHLO"
	switch {
	case c.opts.LMTP:
		verb = "LHLO"
	case c.opts.NeverEHLO:
		verb = "HELO"
	}
	r, err := c.cmd(c.to.Helo, "performing the "+verb+" handshake", verb+" "+c.opts.LocalName)
	if err != nil {
		return err
	}
	if verb == "EHLO" && r.Code/100 != 2 {
		verb = "HELO"
		r, err = c.cmd(c.to.Helo, "performing the HELO handshake", "HELO "+c.opts.LocalName)
		if err != nil {
			return err
		}
	}
	c.helo = r
	if r.Code/100 != 2 {
		return &ReplyError{Command: verb + " command", Reply: r}
	}
	c.heloName = verb
	c.esmtp = verb != "HELO"
	if c.esmtp {
		c.ext = parseExtensions(r.Lines)
	} else {
		c.ext = Extensions{Keywords: map[string]string{}}
	}
	return nil
}

// StartTLS sends STARTTLS, runs the TLS handshake with cfg and repeats
// EHLO/LHLO over the encrypted connection (RFC 3207 4.2). A refusal is a
// *ReplyError ("STARTTLS command"); a failed handshake is a *TLSError and
// leaves the session unusable.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	done := c.watch(ctx)
	r, err := c.cmd(c.to.StartTLS, "receiving the STARTTLS response", "STARTTLS")
	if err != nil {
		done()
		return err
	}
	if r.Code != 220 {
		done()
		return &ReplyError{Command: "STARTTLS command", Reply: r}
	}
	tc := tls.Client(c.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, c.to.StartTLS)
	err = tc.HandshakeContext(hctx)
	cancel()
	done()
	if err != nil {
		return c.fail(&TLSError{Err: err})
	}
	c.conn, c.tls, c.tlsState = tc, true, tc.ConnectionState()
	c.br = bufio.NewReaderSize(tc, 4096)
	c.bw = bufio.NewWriterSize(tc, 32*1024)
	c.ext = Extensions{Keywords: map[string]string{}}
	return c.Hello(ctx)
}

// Reset sends RSET (smtp_rset_timeout) and returns the reply as a
// *ReplyError when it is not 2xx.
func (c *Client) Reset(ctx context.Context) error {
	defer c.watch(ctx)()
	r, err := c.cmd(c.to.Rset, "sending RSET probe", "RSET")
	if err != nil {
		return err
	}
	if r.Code/100 != 2 {
		return &ReplyError{Command: "RSET command", Reply: r}
	}
	return nil
}

// Noop sends NOOP.
func (c *Client) Noop(ctx context.Context) error {
	defer c.watch(ctx)()
	r, err := c.cmd(c.to.Rset, "sending NOOP", "NOOP")
	if err != nil {
		return err
	}
	if r.Code/100 != 2 {
		return &ReplyError{Command: "NOOP command", Reply: r}
	}
	return nil
}

// Quit sends QUIT (smtp_quit_timeout), reads the reply and closes the
// connection. The reply is not judged: the session is over either way.
func (c *Client) Quit(ctx context.Context) error {
	defer c.conn.Close()
	if c.broken != nil {
		return c.broken
	}
	defer c.watch(ctx)()
	_, err := c.cmd(c.to.Quit, "sending QUIT", "QUIT")
	return err
}

// QuitNoWait sends QUIT and closes the connection without waiting for the
// reply (Postfix's smtp_skip_quit_response = yes, its SMTP default).
func (c *Client) QuitNoWait() error {
	defer c.conn.Close()
	if c.broken != nil {
		return c.broken
	}
	c.write("QUIT")
	err := c.flush(c.to.Quit, "sending QUIT")
	c.broken = net.ErrClosed
	return err
}

// Close closes the connection without QUIT.
func (c *Client) Close() error {
	if c.broken == nil {
		c.broken = net.ErrClosed
	}
	return c.conn.Close()
}

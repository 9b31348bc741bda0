// Package smtptest helps test code that talks SMTP: a client that plays a
// conversation with a server over a real socket and returns each reply,
// a script runner that checks replies line by line, and an in-memory
// smtpserver.Handoff that records what a server accepted.
//
// It is for tests of postkit's smtpserver and for applications that put
// their own policy or hand-off behind it:
//
//	c := smtptest.Dial(t, addr)
//	c.Cmd("EHLO client.example")
//	if r := c.Cmd("RCPT TO:<x@example.org>"); r.Code != 554 { ... }
package smtptest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/smtpwire"
	"github.com/postkit-mail/postkit/smtpserver"
)

// Reply is one SMTP reply, single- or multi-line.
type Reply struct {
	Code  int
	Lines []string // the text of each line, without code and separator
	// Closed: the server closed the connection instead of (or right
	// after) replying.
	Closed bool
}

// String renders the reply as it was sent, lines joined with "\n".
func (r Reply) String() string {
	if r.Code == 0 {
		return "(connection closed)"
	}
	var b strings.Builder
	for i, l := range r.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strconv.Itoa(r.Code))
		if i < len(r.Lines)-1 {
			b.WriteByte('-')
		} else if l != "" {
			b.WriteByte(' ')
		}
		b.WriteString(l)
	}
	return b.String()
}

// Text is the last line's text ("2.1.0 Ok").
func (r Reply) Text() string {
	if len(r.Lines) == 0 {
		return ""
	}
	return r.Lines[len(r.Lines)-1]
}

// ErrClosed is returned by ReadReply when the connection ends before a
// reply starts.
var ErrClosed = smtpwire.ErrClosed

// ReadReply reads one reply (RFC 5321 4.2): "CODE-text" lines and a final
// "CODE text" or bare "CODE" line, all with the same code.
func ReadReply(r *bufio.Reader) (Reply, error) {
	code, lines, err := smtpwire.ReadReply(r)
	if err != nil && !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("smtptest: %w", err)
	}
	return Reply{Code: code, Lines: lines}, err
}

// Conn is a client connection driven by a test.
type Conn struct {
	t      testing.TB
	conn   net.Conn
	r      *bufio.Reader
	banner Reply
	closed bool
	// Timeout bounds each reply (default 10 s), so a test never hangs.
	Timeout time.Duration
}

// Dial connects to addr and reads the banner. The connection is closed
// when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("smtptest: dial %s: %v", addr, err)
	}
	return NewConn(t, nc)
}

// NewConn drives an established connection (a unix socket, a TLS
// connection, one end of net.Pipe) and reads the banner.
func NewConn(t testing.TB, nc net.Conn) *Conn {
	t.Helper()
	c := &Conn{t: t, conn: nc, r: bufio.NewReader(nc), Timeout: 10 * time.Second}
	t.Cleanup(c.Close)
	c.banner = c.read()
	return c
}

// Banner is the server's greeting.
func (c *Conn) Banner() Reply { return c.banner }

// NetConn is the underlying connection (for STARTTLS: wrap it with
// tls.Client and call Reset).
func (c *Conn) NetConn() net.Conn { return c.conn }

// Reset replaces the connection, after STARTTLS, without reading a banner.
func (c *Conn) Reset(nc net.Conn) {
	c.conn = nc
	c.r = bufio.NewReader(nc)
}

func (c *Conn) read() Reply {
	c.t.Helper()
	if c.closed {
		return Reply{Closed: true}
	}
	c.conn.SetReadDeadline(time.Now().Add(c.Timeout))
	r, err := ReadReply(c.r)
	if err != nil {
		c.closed = true
		if !errors.Is(err, ErrClosed) && !errors.Is(err, io.EOF) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Errorf("smtptest: no reply within %v", c.Timeout)
			}
		}
		return Reply{Closed: true}
	}
	if r.Code == 421 || r.Code == 521 {
		// RFC 5321 3.8: the server closes the connection after these.
		r.Closed = true
	}
	return r
}

// Cmd sends one command line (CRLF is added) and returns the reply.
func (c *Conn) Cmd(line string) Reply {
	c.t.Helper()
	return c.Pipeline(line)[0]
}

// Pipeline sends several command lines in one write (RFC 2920) and returns
// their replies in order.
func (c *Conn) Pipeline(lines ...string) []Reply {
	c.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	c.Raw([]byte(b.String()))
	out := make([]Reply, len(lines))
	for i := range out {
		out[i] = c.read()
	}
	return out
}

// Raw writes bytes as they are (for smuggling tests and broken clients).
func (c *Conn) Raw(b []byte) {
	c.t.Helper()
	if c.closed {
		return
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.Timeout))
	if _, err := c.conn.Write(b); err != nil {
		c.closed = true
	}
}

// ReadReply reads one more reply (after Raw).
func (c *Conn) ReadReply() Reply {
	c.t.Helper()
	return c.read()
}

// Data sends a message body after a 354 reply: lines are dot-stuffed and
// CRLF-terminated, then "." ends it. It returns the reply to the ".".
func (c *Conn) Data(body string) Reply {
	c.t.Helper()
	var b strings.Builder
	body = strings.ReplaceAll(body, "\r\n", "\n")
	for _, l := range strings.SplitAfter(strings.TrimSuffix(body, "\n"), "\n") {
		l = strings.TrimSuffix(l, "\n")
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	c.Raw([]byte(b.String()))
	return c.read()
}

// Close sends nothing more and closes the connection.
func (c *Conn) Close() {
	if c.conn != nil {
		c.conn.Close()
	}
	c.closed = true
}

// Script plays a conversation against addr, line by line:
//
//	S: 220                 the banner (first line only)
//	C: EHLO client.example  a command
//	S: 250                 its expected reply: the code, and optionally
//	                       text the reply's last line must start with
//	B: Subject: hi         a message body line, sent (dot-stuffed, with
//	                       the final ".") at the next "S:" line
//
// Blank lines and "#" comments are skipped. Mismatches are reported with
// t.Errorf and the script goes on.
func Script(t testing.TB, addr, script string) {
	t.Helper()
	c := Dial(t, addr)
	var cmds, body []string
	first := true
	for i, l := range strings.Split(script, "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "C: "):
			cmds = append(cmds, l[3:])
		case strings.HasPrefix(l, "B: ") || l == "B:":
			body = append(body, strings.TrimPrefix(strings.TrimPrefix(l, "B:"), " "))
		case strings.HasPrefix(l, "S: "):
			var r Reply
			switch {
			case first && len(cmds) == 0:
				r = c.Banner()
			case len(body) > 0:
				r = c.Data(strings.Join(body, "\n"))
				body = nil
			case len(cmds) > 0:
				r = c.Cmd(cmds[0])
				cmds = cmds[1:]
			default:
				t.Errorf("smtptest: script line %d: a reply without a command", i+1)
				continue
			}
			first = false
			code, text, _ := strings.Cut(strings.TrimSpace(l[3:]), " ")
			if strconv.Itoa(r.Code) != code || !strings.HasPrefix(r.Text(), text) {
				t.Errorf("smtptest: script line %d: got %q, want %q", i+1, r.String(), l[3:])
			}
		default:
			t.Errorf("smtptest: script line %d: %q is not a C:, S: or B: line", i+1, l)
		}
	}
}

// Handoff is an in-memory smtpserver.Handoff: it keeps every committed
// message, numbered queue IDs, and can be told to fail.
type Handoff struct {
	mu       sync.Mutex
	n        int
	messages []*Message
	// FailOpen, FailWrite and FailCommit make the next messages fail at
	// that step with this error (nil: succeed).
	FailOpen, FailWrite, FailCommit error
}

// Message is a message held by Handoff.
type Message struct {
	h         *Handoff
	id        string
	Envelope  smtpserver.Envelope
	Data      []byte
	Committed bool
	Aborted   bool
}

// Open implements smtpserver.Handoff.
func (h *Handoff) Open(ctx context.Context, env *smtpserver.Envelope) (smtpserver.Message, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.FailOpen != nil {
		return nil, h.FailOpen
	}
	h.n++
	m := &Message{h: h, id: fmt.Sprintf("TEST%06X", h.n), Envelope: *env}
	h.messages = append(h.messages, m)
	return m, nil
}

// Messages returns the committed messages, in order.
func (h *Handoff) Messages() []*Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*Message
	for _, m := range h.messages {
		if m.Committed {
			out = append(out, m)
		}
	}
	return out
}

// ID implements smtpserver.Message.
func (m *Message) ID() string { return m.id }

// Write implements smtpserver.Message.
func (m *Message) Write(p []byte) (int, error) {
	m.h.mu.Lock()
	defer m.h.mu.Unlock()
	if m.h.FailWrite != nil {
		return 0, m.h.FailWrite
	}
	m.Data = append(m.Data, p...)
	return len(p), nil
}

// Commit implements smtpserver.Message.
func (m *Message) Commit(ctx context.Context, env *smtpserver.Envelope) error {
	m.h.mu.Lock()
	defer m.h.mu.Unlock()
	if m.h.FailCommit != nil {
		return m.h.FailCommit
	}
	m.Envelope = *env
	m.Committed = true
	return nil
}

// Abort implements smtpserver.Message.
func (m *Message) Abort() error {
	m.h.mu.Lock()
	defer m.h.mu.Unlock()
	m.Aborted = true
	return nil
}

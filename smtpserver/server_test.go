package smtpserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// memHandoff keeps messages in memory for tests.
type memHandoff struct {
	mu                   sync.Mutex
	n                    int
	done                 []*memMsg
	failOpen, failCommit error
}

type memMsg struct {
	h       *memHandoff
	id      string
	buf     bytes.Buffer
	env     *Envelope
	aborted bool
}

func (h *memHandoff) Open(ctx context.Context, env *Envelope) (Message, error) {
	if h.failOpen != nil {
		return nil, h.failOpen
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	return &memMsg{h: h, id: fmt.Sprintf("4X%04dA", h.n)}, nil
}

func (m *memMsg) ID() string                  { return m.id }
func (m *memMsg) Write(p []byte) (int, error) { return m.buf.Write(p) }
func (m *memMsg) Abort() error                { m.aborted = true; return nil }
func (m *memMsg) Commit(ctx context.Context, env *Envelope) error {
	if m.h.failCommit != nil {
		return m.h.failCommit
	}
	m.env = env
	m.h.mu.Lock()
	m.h.done = append(m.h.done, m)
	m.h.mu.Unlock()
	return nil
}

func (h *memHandoff) messages() []*memMsg {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*memMsg(nil), h.done...)
}

// logBuffer collects the server's log messages.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) Enabled(context.Context, slog.Level) bool { return true }
func (l *logBuffer) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.lines = append(l.lines, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logBuffer) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logBuffer) WithGroup(string) slog.Handler      { return l }
func (l *logBuffer) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// startServer runs a server on a loopback port for the test.
func startServer(t testing.TB, cfg Config) (addr string, h *memHandoff, logs *logBuffer) {
	t.Helper()
	h = &memHandoff{}
	if cfg.Handoff == nil {
		cfg.Handoff = h
	}
	logs = &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(logs)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.oracle.test"
	}
	if cfg.ErrorSleepTime == 0 {
		cfg.ErrorSleepTime = -1
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String(), h, logs
}

// client is a raw SMTP client.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) (*client, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	return cl, cl.read()
}

// read reads one reply, lines joined with "\n"; "(closed)" at EOF.
func (c *client) read() string {
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := oracle.ReadReply(c.br)
	if err != nil {
		return "(closed)"
	}
	return r.String()
}

func (c *client) send(raw string) {
	if _, err := c.c.Write([]byte(raw)); err != nil {
		c.t.Logf("write: %v", err)
	}
}

func (c *client) cmd(line string) string {
	c.send(line + "\r\n")
	return c.read()
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// stdoutHandoff prints each message; a real application hands messages
// to its queue.
type stdoutHandoff struct{}

type stdoutMessage struct {
	bytes.Buffer
}

func (stdoutHandoff) Open(ctx context.Context, env *Envelope) (Message, error) {
	return &stdoutMessage{}, nil
}
func (m *stdoutMessage) ID() string   { return "3F2A1B4C5D" }
func (m *stdoutMessage) Abort() error { return nil }
func (m *stdoutMessage) Commit(ctx context.Context, env *Envelope) error {
	// The server's Received: header comes first, then the client's text.
	text := strings.ReplaceAll(m.String(), "\r\n", "\n")
	fmt.Printf("from=<%s> to=<%s>\n%s", env.Sender, env.Recipients[0].Addr, text[strings.Index(text, "Subject:"):])
	return nil
}

func ExampleServer() {
	srv, err := New(Config{Hostname: "mx.example.com", Handoff: stdoutHandoff{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve(ln)
	defer srv.Close()

	err = smtp.SendMail(ln.Addr().String(), nil, "alice@example.org", []string{"bob@example.com"},
		[]byte("Subject: hello\r\n\r\nHi Bob.\r\n"))
	fmt.Println("SendMail:", err)
	// Output:
	// from=<alice@example.org> to=<bob@example.com>
	// Subject: hello
	//
	// Hi Bob.
	// SendMail: <nil>
}

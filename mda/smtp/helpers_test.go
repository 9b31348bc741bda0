package smtp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
)

// Test servers all listen on the same port on different loopback
// addresses (127.0.0.2, .3, ...), so that MX records can point at them and
// the agent's smtp_tcp_port reaches every one; 127.0.0.1 plays this host.

var portMu sync.Mutex

// freePort finds a port that is free on every address in ips.
func freePort(t testing.TB, ips ...string) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.250:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

type memHandoff struct {
	mu   sync.Mutex
	msgs []*memMsg
}

type memMsg struct {
	h   *memHandoff
	id  string
	buf bytes.Buffer
	env smtpserver.Envelope
}

func (h *memHandoff) Open(ctx context.Context, env *smtpserver.Envelope) (smtpserver.Message, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return &memMsg{h: h, id: fmt.Sprintf("Q%d", len(h.msgs)+1)}, nil
}
func (m *memMsg) ID() string                  { return m.id }
func (m *memMsg) Write(p []byte) (int, error) { return m.buf.Write(p) }
func (m *memMsg) Abort() error                { return nil }
func (m *memMsg) Commit(ctx context.Context, env *smtpserver.Envelope) error {
	m.env = *env
	m.h.mu.Lock()
	m.h.msgs = append(m.h.msgs, m)
	m.h.mu.Unlock()
	return nil
}
func (m *memMsg) CommitRecipients(ctx context.Context, env *smtpserver.Envelope) []error {
	errs := make([]error, len(env.Recipients))
	for i, r := range env.Recipients {
		if strings.HasPrefix(r.Addr, "full@") {
			errs[i] = &smtpserver.ReplyError{Reply: restrictions.Reply{Code: 452, DSN: "4.2.2", Text: "Mailbox full"}}
		}
	}
	m.Commit(ctx, env)
	return errs
}
func (h *memHandoff) messages() []*memMsg {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*memMsg(nil), h.msgs...)
}

// checker rejects recipients by local part: "unknown" 550 5.1.1, "later"
// 450 4.2.1.
func checker(t testing.TB) *restrictions.Checker {
	cfg := restrictions.DefaultConfig()
	cfg.Mynetworks = []string{"0.0.0.0/0", "[::]/0"}
	cfg.Funcs = map[string]restrictions.Func{
		"check_test_rcpt": func(ctx context.Context, stage restrictions.Stage, s *restrictions.Snapshot) (string, error) {
			switch {
			case strings.HasPrefix(s.Recipient, "unknown@"):
				return "550 5.1.1 User unknown", nil
			case strings.HasPrefix(s.Recipient, "later@"):
				return "450 4.2.1 Try again later", nil
			}
			return "DUNNO", nil
		},
	}
	cfg.RecipientRestrictions = "check_test_rcpt"
	c, err := restrictions.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type userPass struct{ user, pass string }

func (b userPass) Mechanisms(tls bool) []string { return []string{"PLAIN"} }
func (b userPass) NewMech(name string) (auth.ServerMech, error) {
	if name != "PLAIN" {
		return nil, auth.ErrMechanism
	}
	return &plainSrv{b: b}, nil
}

type plainSrv struct {
	b    userPass
	user string
}

func (m *plainSrv) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if resp == nil {
		return nil, false, nil
	}
	f := bytes.Split(resp, []byte{0})
	if len(f) != 3 || string(f[1]) != m.b.user || string(f[2]) != m.b.pass {
		return nil, false, auth.ErrBadPassword
	}
	m.user = string(f[1])
	return nil, true, nil
}
func (m *plainSrv) User() string { return m.user }

// peer is postkit's smtpserver on a loopback address.
type peer struct {
	addr    string
	h       *memHandoff
	accepts atomic.Int64
	roots   *x509.CertPool
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startPeer serves smtpserver on network/addr ("tcp", "127.0.0.2:PORT" or
// "unix", path).
func startPeer(t testing.TB, network, addr string, mod func(*smtpserver.Config)) *peer {
	t.Helper()
	p := &peer{h: &memHandoff{}, addr: addr}
	cfg := smtpserver.Config{
		Hostname:       "mx.peer.test",
		Handoff:        p.h,
		Checker:        checker(t),
		ErrorSleepTime: -1,
		Logger:         slog.New(slog.DiscardHandler),
		SMTPUTF8Enable: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	if cfg.TLS != nil && len(cfg.TLS.Certificates) > 0 {
		leaf, err := x509.ParseCertificate(cfg.TLS.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		p.roots = x509.NewCertPool()
		p.roots.AddCert(leaf)
	}
	srv, err := smtpserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(countingListener{ln, &p.accepts})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return p
}

func withTLS(t testing.TB, names ...string) func(*smtpserver.Config) {
	cert, err := smtpserver.SelfSigned(names...)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *smtpserver.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.TLSLevel = smtpserver.TLSMay
	}
}

// startSink runs Postfix's smtp-sink on addr with args; it dumps every
// transaction into a file of the directory it returns.
func startSink(t testing.TB, addr string, args ...string) string {
	t.Helper()
	bin := oracle.Require(t, "smtp-sink")
	// smtp-sink drops privileges before it writes dumps: the directory
	// must be reachable by nobody, which t.TempDir's parent is not.
	dir, err := os.MkdirTemp("", "smtp-sink")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	all := []string{"-d", filepath.Join(dir, "%H%M%S.")}
	if os.Geteuid() == 0 {
		all = append(all, "-u", "nobody")
	}
	all = append(all, args...)
	all = append(all, addr, "64")
	cmd := exec.Command(bin, all...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	network, where := "tcp", addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, where = "unix", path
	}
	for {
		c, err := net.DialTimeout(network, where, time.Second)
		if err == nil {
			c.Close()
			return dir
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink %v did not start: %v %s", all, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// delivery builds a queue.Delivery of msg from sender to rcpts.
func delivery(nexthop, sender, msg string, rcpts ...string) *queue.Delivery {
	env := &cleanup.Envelope{QueueID: "4ABCDEF", Arrival: time.Now(), Sender: sender, Size: int64(len(msg))}
	d := &queue.Delivery{QueueID: "4ABCDEF", Envelope: env, Transport: "smtp", Nexthop: nexthop, Size: int64(len(msg)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil }}
	for i, r := range rcpts {
		cr := cleanup.Recipient{Addr: r, Original: r}
		env.Recipients = append(env.Recipients, cr)
		d.Recipients = append(d.Recipients, queue.Recipient{Index: i, Addr: r, Recipient: cr})
	}
	return d
}

const testMsg = "From: a@example.org\r\nTo: b@example.com\r\nSubject: test\r\n\r\nHello.\r\n"

// logBuf collects the agent's log lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) Enabled(context.Context, slog.Level) bool { return true }
func (l *logBuf) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.lines = append(l.lines, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logBuf) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logBuf) WithGroup(string) slog.Handler      { return l }
func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// sinkDumps returns the content of the dump files in dir.
func sinkDumps(dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			out = append(out, string(b))
		}
		return nil
	})
	return out
}

func slogOf(h slog.Handler) *slog.Logger { return slog.New(h) }

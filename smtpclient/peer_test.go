package smtpclient_test

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
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
)

// memHandoff keeps what postkit's smtpserver accepted. Recipients with
// the local part "full" get "452 4.2.2 Mailbox full" at the end of data in
// LMTP mode.
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

// body is the message as the client sent it: the server's Received:
// header removed.
func (m *memMsg) body() string {
	s := m.buf.String()
	if strings.HasPrefix(s, "Received:") {
		i := strings.Index(s, "\r\n")
		for i >= 0 && i+2 < len(s) && (s[i+2] == ' ' || s[i+2] == '\t') {
			i += 2 + strings.Index(s[i+2:], "\r\n")
		}
		s = s[i+2:]
	}
	return s
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

// userPass is a one-user SASL database offering PLAIN and LOGIN.
type userPass struct{ user, pass string }

func (b userPass) Mechanisms(tls bool) []string { return []string{"PLAIN", "LOGIN"} }
func (b userPass) NewMech(name string) (auth.ServerMech, error) {
	switch name {
	case "PLAIN":
		return &plainSrv{b: b}, nil
	case "LOGIN":
		return &loginSrv{b: b}, nil
	}
	return nil, auth.ErrMechanism
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

type loginSrv struct {
	b          userPass
	step       int
	user, pass string
}

func (m *loginSrv) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	m.step++
	switch m.step {
	case 1:
		if resp != nil {
			m.user = string(resp)
			m.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		m.user = string(resp)
		return []byte("Password:"), false, nil
	}
	if m.user != m.b.user || string(resp) != m.b.pass {
		return nil, false, auth.ErrBadPassword
	}
	return nil, true, nil
}
func (m *loginSrv) User() string { return m.user }

type peer struct {
	addr string
	h    *memHandoff
	// roots trusts the server's self-signed certificate (when TLS is on).
	roots *x509.CertPool
}

// startPeer runs postkit's smtpserver on a loopback port.
func startPeer(t testing.TB, mod func(*smtpserver.Config)) *peer {
	t.Helper()
	p := &peer{h: &memHandoff{}}
	cfg := smtpserver.Config{
		Hostname:       "mx.peer.test",
		Handoff:        p.h,
		Checker:        checker(t),
		ErrorSleepTime: -1,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
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
	p.addr = ln.Addr().String()
	return p
}

func withTLS(t testing.TB) func(*smtpserver.Config) {
	cert, err := smtpserver.SelfSigned("mx.peer.test")
	if err != nil {
		t.Fatal(err)
	}
	return func(c *smtpserver.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.TLSLevel = smtpserver.TLSMay
	}
}

// sink is a running Postfix smtp-sink.
type sink struct {
	addr string
	dir  string // its dump directory (-d)
}

// startSink runs Postfix's smtp-sink with args on a free loopback port,
// dumping each transaction into a file under a temporary directory.
func startSink(t testing.TB, args ...string) *sink {
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
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
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink %v did not start: %v %s", all, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &sink{addr: addr, dir: dir}
}

// dumps returns the content of smtp-sink's dump files.
func (s *sink) dumps(t testing.TB) []string {
	t.Helper()
	var out []string
	filepath.Walk(s.dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			out = append(out, string(b))
		}
		return nil
	})
	return out
}

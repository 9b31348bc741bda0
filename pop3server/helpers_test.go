package pop3server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
)

// testCert writes a self-signed certificate for 127.0.0.1 and localhost.
func testCert(t testing.TB, dir string) (certFile, keyFile string, cfg *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, &tls.Config{Certificates: []tls.Certificate{pair}}
}

// syncBuffer is a log sink for concurrent sessions.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// env is a running server with users alice (password "secret") and bob
// ("hunter2 two"), whose Maildirs are HOME/Maildir under Dir.
type env struct {
	Dir               string
	Addr, TLSAddr     string
	CertFile, KeyFile string
	Srv               *Server
	Log               *syncBuffer
	Sleeps            *[]time.Duration
}

func (e *env) maildir(user string) string { return filepath.Join(e.Dir, user, "Maildir") }

func startServer(t testing.TB, tweak func(*Server)) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{Dir: dir, Log: &syncBuffer{}}
	var certCfg *tls.Config
	e.CertFile, e.KeyFile, certCfg = testCert(t, dir)
	var lines []string
	// passwd-file refuses uid 0: a test running as root gives the mail
	// to nobody.
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534
	}
	for _, u := range []struct{ name, pw string }{{"alice", "secret"}, {"bob", "hunter2 two"}} {
		home := filepath.Join(dir, u.name)
		lines = append(lines, fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s::", u.name, u.pw, uid, gid, home))
	}
	pwPath := filepath.Join(dir, "passwd")
	os.WriteFile(pwPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	pf, err := auth.OpenPasswdFile(pwPath, auth.PasswdFileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sleeps []time.Duration
	e.Sleeps = &sleeps
	a := &auth.Authenticator{
		PassDB: pf, UserDB: pf,
		// Failed logins are delayed by 2 s (auth_failure_delay); the
		// tests record the delay instead of waiting for it.
		Sleep: func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			sleeps = append(sleeps, d)
			mu.Unlock()
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	hub := mailbox.NewHub(mailbox.HubOptions{Watch: mailbox.WatchNone})
	t.Cleanup(func() { hub.Close() })
	e.Srv = &Server{
		Auth:      a,
		TLSConfig: certCfg,
		Hub:       hub,
		Logger:    slog.New(slog.NewTextHandler(e.Log, nil)),
	}
	if tweak != nil {
		tweak(e.Srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.Addr, e.TLSAddr = ln.Addr().String(), tln.Addr().String()
	go e.Srv.Serve(ln)
	go e.Srv.ServeTLS(tln)
	t.Cleanup(func() { e.Srv.Close() })
	return e
}

// deliver puts messages in user's Maildir (LF line ends, as delivered).
func (e *env) deliver(t testing.TB, user string, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if _, err := mailbox.DeliverMaildir(context.Background(), e.maildir(user), strings.NewReader(m),
			mailbox.MaildirOptions{Create: true, Hub: e.Srv.Hub}); err != nil {
			t.Fatal(err)
		}
	}
}

// client is a raw POP3 client that keeps the exact bytes.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, conn: c, br: bufio.NewReader(c)}
	cl.line() // greeting
	return cl
}

func dialFrom(t testing.TB, src, addr string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, conn: c, br: bufio.NewReader(c)}
	cl.line()
	return cl
}

func (c *client) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the status line.
func (c *client) cmd(format string, args ...any) string {
	c.t.Helper()
	fmt.Fprintf(c.conn, format+"\r\n", args...)
	return c.line()
}

// multi reads a multi-line body up to the "." line, raw (stuffed, CRLF).
func (c *client) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		if l == "." {
			return b.String()
		}
		b.WriteString(l + "\r\n")
	}
}

func (c *client) login(user, pw string) {
	c.t.Helper()
	if r := c.cmd("USER %s", user); r != "+OK" {
		c.t.Fatalf("USER: %s", r)
	}
	if r := c.cmd("PASS %s", pw); r != "+OK Logged in." {
		c.t.Fatalf("PASS: %s", r)
	}
}

// crlfStuffed is what RETR must send for a stored message.
func crlfStuffed(msg string) string {
	lines := strings.SplitAfter(msg, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l == "" {
			continue
		}
		body := strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
		if strings.HasPrefix(body, ".") {
			b.WriteString(".")
		}
		b.WriteString(body + "\r\n")
	}
	return b.String()
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

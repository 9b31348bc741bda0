package smtpserver_test

// A differential test of the AUTH and new-TLS-session rate limits
// (smtpd_client_auth_rate_limit, smtpd_client_new_tls_session_rate_limit):
// the same sessions against a private Postfix (whose anvil service counts)
// and against postkit's Listener + Server built from the same main.cf.
// Replies and the "rate limit exceeded" warnings are compared. A TLS 1.3
// session resumed from a ticket is not a new session for either.

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// avLogs collects postkit's warnings.
type avLogs struct {
	mu    sync.Mutex
	lines []string
}

func (l *avLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l *avLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Message)
	return nil
}
func (l *avLogs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *avLogs) WithGroup(string) slog.Handler      { return l }
func (l *avLogs) warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.lines {
		if strings.Contains(m, "rate limit exceeded") {
			out = append(out, m)
		}
	}
	return out
}

// avStep is one command of a session; "STARTTLS" also does the handshake
// (resuming a session when the client has a ticket).
type avSession []string

func avPlay(t *testing.T, addr string, cc *tls.Config, s avSession) []string {
	t.Helper()
	c := smtptest.Dial(t, addr)
	defer c.Close()
	out := []string{c.Banner().String()}
	for _, l := range s {
		r := c.Cmd(l)
		out = append(out, r.String())
		if r.Closed || r.Code == 421 {
			break
		}
		if l == "STARTTLS" && r.Code == 220 {
			tc := tls.Client(c.NetConn(), cc)
			if err := tc.Handshake(); err != nil {
				out = append(out, "handshake: "+err.Error())
				break
			}
			resumed := "full handshake"
			if tc.ConnectionState().DidResume {
				resumed = "resumed"
			}
			out = append(out, resumed)
			// A reply the server sends unasked after the handshake
			// (the 421 of the new-session limit) must be read before
			// the next command, whose arrival at a closed socket would
			// reset the connection and lose it.
			tc.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 512)
			n, _ := tc.Read(buf)
			tc.SetReadDeadline(time.Time{})
			if n > 0 {
				out = append(out, "unasked: "+strings.TrimSpace(string(buf[:n])))
				break
			}
			c.Reset(tc)
		}
	}
	return out
}

func TestAuthAndTLSRateLimitsAgainstPostfix(t *testing.T) {
	oracle.Require(t, "postfix")
	dir := t.TempDir()
	_, crt, key := rcCertFiles(t, dir)
	a := aoAuthenticator(t, slog.New(slog.DiscardHandler))
	sock := aoServeDovecot(t, a)
	main := fmt.Sprintf(`smtpd_tls_security_level = may
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = %s
smtpd_authorized_xclient_hosts =
smtpd_client_event_limit_exceptions =
smtpd_client_auth_rate_limit = 2
smtpd_client_new_tls_session_rate_limit = 2
`, crt, key, sock)
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
	c, err := config.Parse("main.cf", strings.NewReader(pf.MainCF()))
	if err != nil {
		t.Fatal(err)
	}
	logs := &avLogs{}
	cfg, err := smtpserver.ConfigFrom(context.Background(), c, smtpserver.RoleSMTP, restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth, err = smtpserver.SASLFrom(c, a); err != nil {
		t.Fatal(err)
	}
	cfg.Handoff = &smtptest.Handoff{}
	cfg.ErrorSleepTime = -1
	cfg.Logger = slog.New(logs)
	srv, err := smtpserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lcfg, err := smtpserver.ListenerConfigFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	// Postfix names the service by its master.cf name.
	lcfg.Service = "127.0.0.1:" + fmt.Sprint(pf.Port)
	lcfg.Logger = cfg.Logger
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := smtpserver.NewListener(inner, lcfg)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	bad := "AUTH PLAIN " + aoPlain(aoCarol, "wrong")
	good := "AUTH PLAIN " + aoPlain(aoCarol, aoCarolPass)
	sessions := []avSession{
		{"EHLO c.example", bad, bad, good, "NOOP"},
		{"EHLO c.example", "STARTTLS", "EHLO c.example", "NOOP"},
		{"EHLO c.example", "STARTTLS", "EHLO c.example", "NOOP"},
		{"EHLO c.example", "STARTTLS", "EHLO c.example", "NOOP"},
		{"EHLO c.example", "STARTTLS", "EHLO c.example", "NOOP"},
		{"EHLO c.example", "STARTTLS", "EHLO c.example", "NOOP"},
	}
	run := func(addr string, warn func() []string) []string {
		// One ticket cache per server: the second TLS session resumes
		// the first.
		cc := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		var out []string
		for i, s := range sessions {
			out = append(out, fmt.Sprintf("-- session %d", i))
			out = append(out, avPlay(t, addr, cc, s)...)
			if i == 2 {
				// Session 2 resumed session 1; from now on every
				// handshake is a full one.
				cc = &tls.Config{InsecureSkipVerify: true}
			}
			time.Sleep(100 * time.Millisecond)
			out = append(out, warn()...)
		}
		return out
	}
	// The two servers count separately: play both at once (each
	// session waits a second for an unasked reply after STARTTLS).
	var want, got []string
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		var pfWarn []string
		want = run(pf.Addr, func() []string {
			var w []string
			for _, l := range strings.Split(pf.Log(), "\n") {
				if m := strings.TrimPrefix(smtpdWarn(l), "warning: "); m != "" {
					w = append(w, m)
				}
			}
			out := w[len(pfWarn):]
			pfWarn = w
			return out
		})
	}()
	go func() {
		defer wg.Done()
		var ourWarn []string
		got = run(ln.Addr().String(), func() []string {
			w := logs.warnings()
			out := w[len(ourWarn):]
			ourWarn = w
			return out
		})
	}()
	wg.Wait()
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("differ\n--- Postfix:\n%s\n--- postkit:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	} else {
		t.Logf("\n%s", strings.Join(want, "\n"))
	}
}

// smtpdWarn returns the message of an smtpd "rate limit exceeded"
// warning log line, or "".
func smtpdWarn(line string) string {
	_, m, ok := strings.Cut(line, "postfix/smtpd[")
	if !ok {
		return ""
	}
	_, m, _ = strings.Cut(m, "]: ")
	if !strings.Contains(m, "rate limit exceeded") {
		return ""
	}
	return m
}

func rcCertFiles(t *testing.T, dir string) (tls.Certificate, string, string) {
	t.Helper()
	cert, err := smtpserver.SelfSigned("mx.oracle.test")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := dir+"/srv.crt", dir+"/srv.key"
	if err := smtpserver.WriteCertificatePEM(cert, crt, key); err != nil {
		t.Fatal(err)
	}
	return cert, crt, key
}

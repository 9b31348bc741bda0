package smtpserver_test

// A differential test of SMTP AUTH: the same dialogues are played against a
// private Postfix 3.7 smtpd that authenticates through smtpd_sasl_type =
// dovecot against postkit's Dovecot-protocol server, and against postkit's
// smtpserver using the same auth.Authenticator directly. Both servers
// therefore ask the same user database the same questions, and what
// differs is only the SMTP side: reply codes, enhanced codes, texts, and
// the order of the checks.

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// Users of the oracle's passwd-file: carol has a SHA512-CRYPT hash, which
// serves PLAIN and LOGIN only; dan has a {CRAM-MD5} secret, which serves
// CRAM-MD5 too.
const (
	aoCarol     = "carol@example.com"
	aoCarolPass = "carol-secret"
	aoDan       = "dan@example.com"
	aoDanPass   = "dan-secret"
)

// aoMain is the main.cf both servers run with: SMTP AUTH through the
// Dovecot protocol (the socket path is filled in), no TLS (so the
// plaintext mechanisms are offered), Postfix's default security options
// spelled out, no AUTH= line. smtpd_hard_error_limit is low so that the
// "too many failures" dialogue stays short.
const aoMain = "" +
	"smtpd_sasl_auth_enable = yes\n" +
	"smtpd_sasl_type = dovecot\n" +
	"smtpd_sasl_path = %s\n" +
	"smtpd_tls_security_level = none\n" +
	"smtpd_sasl_security_options = noanonymous\n" +
	"broken_sasl_auth_clients = no\n" +
	"smtpd_hard_error_limit = 4\n"

// aoB64 is standard base64, as SASL in SMTP uses (RFC 4954 §4).
func aoB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// aoPlain is a PLAIN initial response (RFC 4616): empty authzid.
func aoPlain(user, pass string) string { return aoB64("\x00" + user + "\x00" + pass) }

// aoStep is one client line. A step with cram set answers the preceding
// 334 challenge with the CRAM-MD5 digest for user and password.
type aoStep struct {
	line       string
	cram       bool
	user, pass string
	// wait sends nothing and reads a reply the server sends on its own
	// (the 421 of smtpd_hard_error_limit).
	wait bool
}

// aoDialogue is one session. One with a wait step is played on Postfix
// with smtptest too, not with the harness's session, which after a reply
// the server sent unasked waits for log lines that never come.
type aoDialogue struct {
	name  string
	steps []aoStep
}

func aoLines(lines ...string) []aoStep {
	var out []aoStep
	for _, l := range lines {
		out = append(out, aoStep{line: l})
	}
	return out
}

// aoDialogues are played on both servers; every reply is compared.
func aoDialogues() []aoDialogue {
	ehlo := "EHLO client.example"
	cram := func(user, pass string) []aoStep {
		return []aoStep{{line: ehlo}, {line: "AUTH CRAM-MD5"}, {cram: true, user: user, pass: pass}, {line: "MAIL FROM:<a@example.org>"}}
	}
	return []aoDialogue{
		{"ehlo", aoLines(ehlo)},
		{"plain initial good", aoLines(ehlo, "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>")},
		{"plain initial bad password", aoLines(ehlo, "AUTH PLAIN "+aoPlain(aoCarol, "wrong"), "MAIL FROM:<a@example.org>")},
		{"plain initial unknown user", aoLines(ehlo, "AUTH PLAIN "+aoPlain("nobody@example.com", "x"))},
		{"plain initial mixed case mechanism", aoLines(ehlo, "auth plain "+aoPlain(aoCarol, aoCarolPass))},
		{"plain initial authzid other user", aoLines(ehlo, "AUTH PLAIN "+aoB64(aoDan+"\x00"+aoCarol+"\x00"+aoCarolPass))},
		{"plain no initial response good", aoLines(ehlo, "AUTH PLAIN", aoPlain(aoCarol, aoCarolPass))},
		{"plain no initial response bad", aoLines(ehlo, "AUTH PLAIN", aoPlain(aoCarol, "wrong"))},
		{"plain empty initial response", aoLines(ehlo, "AUTH PLAIN =", aoPlain(aoCarol, aoCarolPass))},
		{"plain cancel", aoLines(ehlo, "AUTH PLAIN", "*", "NOOP")},
		{"plain initial response star", aoLines(ehlo, "AUTH PLAIN *", "NOOP")},
		{"plain invalid base64 initial", aoLines(ehlo, "AUTH PLAIN !!!notbase64", "NOOP")},
		{"plain invalid base64 response", aoLines(ehlo, "AUTH PLAIN", "!!!notbase64", "NOOP")},
		{"plain malformed message", aoLines(ehlo, "AUTH PLAIN "+aoB64("no-nuls-here"))},
		{"login good", aoLines(ehlo, "AUTH LOGIN", aoB64(aoCarol), aoB64(aoCarolPass), "MAIL FROM:<a@example.org>")},
		{"login bad", aoLines(ehlo, "AUTH LOGIN", aoB64(aoCarol), aoB64("wrong"))},
		{"login initial response", aoLines(ehlo, "AUTH LOGIN "+aoB64(aoCarol), aoB64(aoCarolPass))},
		{"login cancel at user", aoLines(ehlo, "AUTH LOGIN", "*", "NOOP")},
		{"login cancel at password", aoLines(ehlo, "AUTH LOGIN", aoB64(aoCarol), "*", "NOOP")},
		{"login invalid base64", aoLines(ehlo, "AUTH LOGIN", "%%%", "NOOP")},
		{"login then mail then auth again", aoLines(ehlo, "AUTH LOGIN", aoB64(aoDan), aoB64(aoDanPass), "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass))},
		{"plain empty line response", aoLines(ehlo, "AUTH PLAIN", "", "NOOP")},
		{"login empty user", aoLines(ehlo, "AUTH LOGIN", "", aoB64(aoCarolPass), "NOOP")},
		{"login lower case", aoLines(ehlo, "auth login", aoB64(aoDan), aoB64(aoDanPass))},
		{"cram-md5 initial response", aoLines(ehlo, "AUTH CRAM-MD5 "+aoB64("dan"), "NOOP")},
		{"unknown mechanism", aoLines(ehlo, "AUTH X-UNKNOWN", "NOOP")},
		{"anonymous refused by noanonymous", aoLines(ehlo, "AUTH ANONYMOUS "+aoB64("me"))},
		{"no argument", aoLines(ehlo, "AUTH", "AUTH ")},
		{"too many arguments", aoLines(ehlo, "AUTH PLAIN a b")},
		{"twice after success", aoLines(ehlo, "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "EHLO again.example", "AUTH LOGIN")},
		{"during mail transaction", aoLines(ehlo, "MAIL FROM:<a@example.org>", "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "RSET", "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass))},
		{"before ehlo", aoLines("AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "HELO client.example", "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass))},
		{"after helo", aoLines("HELO client.example", "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "MAIL FROM:<a@example.org> AUTH=<>")},
		{"mail auth= empty after login", aoLines(ehlo, "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "MAIL FROM:<a@example.org> AUTH=<>", "RCPT TO:<b@example.net>")},
		{"mail auth= xtext after login", aoLines(ehlo, "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "MAIL FROM:<a@example.org> AUTH=carol+2Bx@example.com")},
		{"mail auth= without login", aoLines(ehlo, "MAIL FROM:<a@example.org> AUTH=<>")},
		{"mail auth= bad xtext", aoLines(ehlo, "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "MAIL FROM:<a@example.org> AUTH=a+zz")},
		{"mail auth= bad xtext without login", aoLines(ehlo, "MAIL FROM:<a@example.org> AUTH=a+zz")},
		{"mail auth= twice", aoLines(ehlo, "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "MAIL FROM:<a@example.org> AUTH=<> AUTH=<>")},
		{"mail auth= no value", aoLines(ehlo, "AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass), "MAIL FROM:<a@example.org> AUTH=")},
		// smtpd_hard_error_limit = 4: after the fourth failed AUTH
		// Postfix sends 421 and closes without waiting for a command.
		{"too many failures", append(aoLines(ehlo,
			"AUTH PLAIN "+aoPlain(aoCarol, "w1"),
			"AUTH PLAIN "+aoPlain(aoCarol, "w2"),
			"AUTH PLAIN "+aoPlain(aoCarol, "w3"),
			"AUTH PLAIN "+aoPlain(aoCarol, "w4")), aoStep{wait: true})},
		// Three failures and a success stay under the limit; the
		// errors still count after the success.
		{"failures then success", aoLines(ehlo,
			"AUTH PLAIN "+aoPlain(aoCarol, "w1"),
			"AUTH LOGIN", "*",
			"AUTH PLAIN !",
			"AUTH PLAIN "+aoPlain(aoCarol, aoCarolPass),
			"MAIL FROM:<a@example.org>")},
		{"cram-md5 good", cram(aoDan, aoDanPass)},
		{"cram-md5 bad", cram(aoDan, "wrong")},
		{"cram-md5 user without cram secret", cram(aoCarol, aoCarolPass)},
		{"cram-md5 cancel", aoLines(ehlo, "AUTH CRAM-MD5", "*", "NOOP")},
	}
}

// aoKnown lists the replies in which postkit is known to differ from
// Postfix, keyed by "dialogue/step" (step 0 is the banner), with
// Postfix's reply and postkit's. An entry must match exactly what both
// servers said; a listed difference that disappears is reported too, so
// that the table is kept in step with the engine. It is empty: the five
// differences this test first found (the 535 reason text, invalid
// base64, AUTH in EHLO after a login, AUTH before HELO, a malformed
// AUTH= on MAIL) were fixed in the engine.
var aoKnown = map[string]struct{ postfix, postkit string }{}

// aoAnchors are replies Postfix must give ("dialogue/step": reply
// prefix), so that a broken setup (Postfix unable to reach the auth
// socket, say) cannot pass as agreement.
var aoAnchors = map[string]string{
	"ehlo/1":                       "250-mx.oracle.test\n250-PIPELINING\n250-SIZE 10240000\n250-VRFY\n250-ETRN\n250-AUTH PLAIN LOGIN CRAM-MD5\n",
	"plain initial good/2":         "235 ",
	"plain initial bad password/2": "535 ",
	"login good/4":                 "235 ",
	"cram-md5 good/3":              "235 ",
	"cram-md5 bad/3":               "535 ",
	"too many failures/6":          "421 ",
}

// aoChallenge masks a CRAM-MD5 challenge, which carries a fresh nonce and
// the time: the one thing in these replies that cannot be the same twice.
func aoChallenge(r string) string {
	if code, text, ok := strings.Cut(r, " "); ok && code == "334" {
		if b, err := base64.StdEncoding.DecodeString(text); err == nil && strings.HasPrefix(string(b), "<") {
			return "334 (challenge)"
		}
	}
	return r
}

// aoCRAMResponse answers a 334 challenge line for user and password.
func aoCRAMResponse(t *testing.T, reply, user, pass string) string {
	t.Helper()
	text, ok := strings.CutPrefix(reply, "334 ")
	if !ok {
		t.Fatalf("no CRAM-MD5 challenge: %q", reply)
	}
	challenge, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		t.Fatalf("CRAM-MD5 challenge %q: %v", text, err)
	}
	m := hmac.New(md5.New, []byte(pass))
	m.Write(challenge)
	return aoB64(user + " " + hex.EncodeToString(m.Sum(nil)))
}

// aoAuthenticator is the one user database both servers use.
func aoAuthenticator(t *testing.T, logger *slog.Logger) *auth.Authenticator {
	t.Helper()
	carol, err := auth.HashPassword("SHA512-CRYPT", aoCarolPass)
	if err != nil {
		t.Fatal(err)
	}
	dan, err := auth.HashPassword("CRAM-MD5", aoDanPass)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(path, []byte(aoCarol+":"+carol+"\n"+aoDan+":"+dan+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := auth.OpenPasswdFile(path, auth.PasswdFileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Authenticator{
		PassDB:         db,
		AuthMechanisms: []string{"PLAIN", "LOGIN", "CRAM-MD5"},
		Hostname:       "mx.oracle.test",
		FailureDelay:   -1,
		Logger:         logger,
	}
}

// aoServeDovecot serves a on a unix socket Postfix's smtpd (user postfix)
// can reach and returns its path.
func aoServeDovecot(t *testing.T, a *auth.Authenticator) string {
	t.Helper()
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "aoauth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "auth")
	ln, err := auth.ListenDovecotUnix(path, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- auth.ServeDovecotAuth(ctx, ln, a) }()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		<-served
	})
	return path
}

// aoLogs collects postkit's log lines.
type aoLogs struct {
	mu    sync.Mutex
	lines []string
}

func (l *aoLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l *aoLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Message)
	return nil
}
func (l *aoLogs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *aoLogs) WithGroup(string) slog.Handler      { return l }

func (l *aoLogs) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

// aoPlay runs d with send/read functions and returns the banner and every
// reply, CRAM-MD5 challenges masked.
func aoPlay(t *testing.T, banner string, cmd func(line string, wait bool) (string, bool), d aoDialogue) []string {
	out := []string{banner}
	prev := ""
	for _, st := range d.steps {
		line := st.line
		if st.cram {
			line = aoCRAMResponse(t, prev, st.user, st.pass)
		}
		r, closed := cmd(line, st.wait)
		prev = r
		out = append(out, aoChallenge(r))
		if closed {
			break
		}
	}
	return out
}

// aoSmtptest sends lines with c, or only reads for a wait step. A 421
// ends the session (RFC 5321 §3.8).
func aoSmtptest(c *smtptest.Conn) func(string, bool) (string, bool) {
	return func(line string, wait bool) (string, bool) {
		var r smtptest.Reply
		if wait {
			r = c.ReadReply()
		} else {
			r = c.Cmd(line)
		}
		return r.String(), r.Closed || r.Code == 421
	}
}

// TestAuthAgainstPostfix plays the SMTP AUTH dialogues against Postfix and
// against postkit and compares every reply, text included. Only CRAM-MD5
// challenges are masked (nonce and time).
func TestAuthAgainstPostfix(t *testing.T) {
	oracle.Require(t, "postfix")
	logs := &aoLogs{}
	a := aoAuthenticator(t, slog.New(slog.DiscardHandler))
	sock := aoServeDovecot(t, a)
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: fmt.Sprintf(aoMain, sock)})

	c, err := config.Parse("main.cf", strings.NewReader(pf.MainCF()))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := smtpserver.ConfigFrom(context.Background(), c, smtpserver.RoleSMTP, restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sasl, err := smtpserver.SASLFrom(c, a)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = sasl
	cfg.Handoff = &smtptest.Handoff{}
	// Postfix runs with smtpd_error_sleep_time = 0 (the harness's
	// setting); in Config zero means the default, negative none.
	cfg.ErrorSleepTime = -1
	cfg.Logger = slog.New(logs)
	srv, err := smtpserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	seen := map[string]bool{}
	ran := 0
	logCompared := 0
	defer func() { t.Logf("%d AUTH failure log lines compared", logCompared) }()
	dialogues := aoDialogues()
	for _, d := range dialogues {
		t.Run(d.name, func(t *testing.T) {
			ran++
			var want []string
			var pfLog []string
			if slices.ContainsFunc(d.steps, func(s aoStep) bool { return s.wait }) {
				pc := smtptest.Dial(t, pf.Addr)
				want = aoPlay(t, pc.Banner().String(), aoSmtptest(pc), d)
				pc.Close()
			} else {
				ps := pf.Session(t)
				want = aoPlay(t, ps.Banner().String(), func(line string, _ bool) (string, bool) {
					r := ps.Cmd(line)
					pfLog = append(pfLog, r.Log...)
					return r.String(), r.Closed
				}, d)
				ps.Close()
			}

			logs.take()
			pc := smtptest.Dial(t, addr)
			got := aoPlay(t, pc.Banner().String(), aoSmtptest(pc), d)
			pc.Close()

			t.Logf("Postfix: %q", want)
			// The dialogues must mean something: Postfix reached the
			// user database and answered as the password says.
			for key, prefix := range aoAnchors {
				name, step, _ := strings.Cut(key, "/")
				if name != d.name {
					continue
				}
				var i int
				fmt.Sscan(step, &i)
				if i >= len(want) || !strings.HasPrefix(want[i], prefix) {
					t.Errorf("Postfix's reply %d is not %q: %q", i, prefix, want)
				}
			}
			for i := range max(len(want), len(got)) {
				w, g := "(no reply)", "(no reply)"
				if i < len(want) {
					w = want[i]
				}
				if i < len(got) {
					g = got[i]
				}
				key := fmt.Sprintf("%s/%d", d.name, i)
				k, known := aoKnown[key]
				seen[key] = known
				switch {
				case w == g && known:
					t.Errorf("step %d: listed as a known difference but both say %q: remove it from aoKnown", i, w)
				case w == g:
				case known && k.postfix == w && k.postkit == g:
					t.Logf("step %d: known difference: Postfix %q, postkit %q", i, w, g)
				default:
					t.Errorf("step %d (%s):\n Postfix %q\n postkit %q", i, aoStepName(d, i), w, g)
				}
			}
			// The "SASL MECH authentication failed" warnings, whose
			// sasl_username is "(unavailable)" when the auth server's
			// FAIL names no user (postkit's Dovecot server never does).
			// Postfix's lines are only collected for dialogues played
			// with the harness's session.
			failed := func(lines []string) []string {
				var out []string
				for _, l := range lines {
					if strings.Contains(l, "authentication failed") {
						out = append(out, l)
					}
				}
				return out
			}
			gotLog := failed(logs.take())
			if !slices.ContainsFunc(d.steps, func(s aoStep) bool { return s.wait }) {
				wantLog := failed(pfLog)
				if strings.Join(wantLog, "\n") != strings.Join(gotLog, "\n") {
					t.Errorf("AUTH failure log lines differ\n--- Postfix:\n%s\n--- postkit:\n%s",
						strings.Join(wantLog, "\n"), strings.Join(gotLog, "\n"))
				}
				logCompared += len(wantLog)
			}
		})
	}
	// Every entry of the table must still be reached (when no -run
	// pattern left dialogues out).
	for key := range aoKnown {
		if _, ok := seen[key]; !ok && ran == len(dialogues) {
			t.Errorf("aoKnown lists %q, which no dialogue reaches", key)
		}
	}
}

func aoStepName(d aoDialogue, i int) string {
	if i == 0 {
		return "banner"
	}
	if i-1 < len(d.steps) {
		if d.steps[i-1].cram {
			return "CRAM-MD5 response"
		}
		return d.steps[i-1].line
	}
	return "?"
}

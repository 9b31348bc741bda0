package smtpserver_test

// Tests with real SMTP clients nobody on the team wrote (issue 4): swaks,
// Python's smtplib and Postfix's smtp-source. Each case checks what the
// client printed and its exit status, and what the Handoff received.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

const clientsHost = "mx.clients.test"

// Users of the passwd-file: alice has a SHA512-CRYPT hash (PLAIN and
// LOGIN only), bob a {CRAM-MD5} secret, which serves every mechanism here.
const (
	alicePass = "alice-secret"
	bobPass   = "bob-secret"
)

// authAdapter offers an auth.Authenticator to the server with Postfix's
// default smtpd_sasl_security_options (noanonymous), with and without TLS.
type authAdapter struct{ a *auth.Authenticator }

func (b authAdapter) Mechanisms(bool) []string {
	return b.a.Mechanisms(auth.SecurityOptions{NoAnonymous: true})
}

func (b authAdapter) NewMech(name string) (auth.ServerMech, error) { return b.a.NewMech(name) }

func clientsAuth(t *testing.T) smtpserver.AuthBackend {
	t.Helper()
	aliceHash, err := auth.HashPassword("SHA512-CRYPT", alicePass)
	if err != nil {
		t.Fatal(err)
	}
	bobHash, err := auth.HashPassword("CRAM-MD5", bobPass)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "passwd")
	text := "alice@example.com:" + aliceHash + "\nbob@example.com:" + bobHash + "\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := auth.OpenPasswdFile(path, auth.PasswdFileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return authAdapter{&auth.Authenticator{
		PassDB:         db,
		AuthMechanisms: []string{"PLAIN", "LOGIN", "CRAM-MD5"},
		Hostname:       clientsHost,
		FailureDelay:   -1,
		Logger:         slog.New(slog.DiscardHandler),
	}}
}

// clientsConfig builds a Config for role from main.cf text; the TLS
// certificate (self-signed) is written where smtpd_tls_cert_file points.
func clientsConfig(t *testing.T, role smtpserver.Role, mainCF string) (smtpserver.Config, *smtptest.Handoff) {
	t.Helper()
	dir := t.TempDir()
	cert, err := smtpserver.SelfSigned(clientsHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := smtpserver.WriteCertificatePEM(cert, crt, key); err != nil {
		t.Fatal(err)
	}
	text := "myhostname = " + clientsHost + "\n" +
		"smtpd_tls_cert_file = " + crt + "\nsmtpd_tls_key_file = " + key + "\n" + mainCF
	c, err := config.Parse("main.cf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := smtpserver.ConfigFrom(context.Background(), c, role, restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &smtptest.Handoff{}
	cfg.Handoff = h
	cfg.ErrorSleepTime = -1
	return cfg, h
}

// serveClients runs a server on ln until the test ends.
func serveClients(t *testing.T, cfg smtpserver.Config, ln net.Listener) {
	t.Helper()
	srv, err := smtpserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, smtpserver.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// run runs a client and returns what it printed (stdout and stderr) and
// its exit status.
func run(t *testing.T, path string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("%s %s: %v\n%s", path, strings.Join(args, " "), err, out.String())
	return "", -1
}

// swaks runs swaks against addr with a fixed message and the extra
// arguments.
func swaks(t *testing.T, extra ...string) (string, int) {
	t.Helper()
	path := oracle.Require(t, "swaks")
	args := []string{"--helo", "client.example", "--timeout", "10",
		"--header", "Subject: swaks test", "--body", "hello from swaks"}
	return run(t, path, append(args, extra...)...)
}

func wantLine(t *testing.T, out, line string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimRight(l, "\r") == line {
			return
		}
	}
	t.Errorf("client output lacks the line %q:\n%s", line, out)
}

// checkMessage checks one message the Handoff received: the envelope, the
// Received: header the server put on top (with proto, e.g. "ESMTPSA") and
// the client's text below it.
func checkMessage(t *testing.T, m *smtptest.Message, helo, proto, sender string, rcpts []string, text string) {
	t.Helper()
	if m.Envelope.Sender != sender {
		t.Errorf("sender %q, want %q", m.Envelope.Sender, sender)
	}
	var got []string
	for _, r := range m.Envelope.Recipients {
		got = append(got, r.Addr)
	}
	if strings.Join(got, ",") != strings.Join(rcpts, ",") {
		t.Errorf("recipients %q, want %q", got, rcpts)
	}
	data := string(m.Data)
	want := "Received: from " + helo + " (unknown [127.0.0.1])\r\n"
	if !strings.HasPrefix(data, want) {
		t.Errorf("message does not start with %q:\n%s", want, data)
	}
	by := "\tby " + clientsHost + " (Postfix) with " + proto + " id " + m.ID()
	if len(rcpts) == 1 {
		by += "\r\n\tfor <" + rcpts[0] + ">; "
	} else {
		by += ";\r\n\t"
	}
	if !strings.Contains(data, by) {
		t.Errorf("Received: header lacks %q:\n%s", by, data)
	}
	if !strings.Contains(data, text) {
		t.Errorf("message lacks %q:\n%s", text, data)
	}
	if strings.Contains(strings.ReplaceAll(data, "\r\n", ""), "\n") {
		t.Errorf("bare LF in the handed-off message:\n%q", data)
	}
}

// smtpMainCF: 127.0.0.1 is not in mynetworks, example.com is a local
// domain (without a local recipient table), anything else is relaying.
const smtpMainCF = `mynetworks = 192.0.2.0/24
mydestination = example.com
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
`

func TestSwaksPlain(t *testing.T) {
	oracle.Require(t, "swaks")
	cfg, h := clientsConfig(t, smtpserver.RoleSMTP, smtpMainCF)
	cfg.TLS = nil // port 25 without a certificate
	ln := listenTCP(t)
	serveClients(t, cfg, ln)
	addr := ln.Addr().String()

	t.Run("delivery", func(t *testing.T) {
		out, code := swaks(t, "--server", addr, "--from", "a@example.org", "--to", "b@example.com")
		if code != 0 {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
		wantLine(t, out, "<-  220 "+clientsHost+" ESMTP Postfix")
		wantLine(t, out, "<-  250 2.1.5 Ok")
		msgs := h.Messages()
		if len(msgs) != 1 {
			t.Fatalf("%d messages handed off, want 1", len(msgs))
		}
		wantLine(t, out, "<-  250 2.0.0 Ok: queued as "+msgs[0].ID())
		checkMessage(t, msgs[0], "client.example", "ESMTP", "a@example.org", []string{"b@example.com"},
			"Subject: swaks test\r\n")
		checkMessage(t, msgs[0], "client.example", "ESMTP", "a@example.org", []string{"b@example.com"},
			"\r\n\r\nhello from swaks\r\n")
	})

	t.Run("pipeline", func(t *testing.T) {
		before := len(h.Messages())
		out, code := swaks(t, "--server", addr, "--pipeline", "--from", "p@example.org",
			"--to", "c@example.com,d@example.com")
		if code != 0 {
			t.Fatalf("swaks --pipeline exit %d:\n%s", code, out)
		}
		// swaks prints the pipelined commands as one group, then the
		// replies.
		wantLine(t, out, " -> MAIL FROM:<p@example.org>")
		wantLine(t, out, "<-  250 2.1.0 Ok")
		wantLine(t, out, "<-  354 End data with <CR><LF>.<CR><LF>")
		msgs := h.Messages()
		if len(msgs) != before+1 {
			t.Fatalf("%d messages handed off, want %d", len(msgs), before+1)
		}
		checkMessage(t, msgs[before], "client.example", "ESMTP", "p@example.org",
			[]string{"c@example.com", "d@example.com"}, "\r\n\r\nhello from swaks\r\n")
	})

	t.Run("relay denied", func(t *testing.T) {
		before := len(h.Messages())
		out, code := swaks(t, "--server", addr, "--quit-after", "RCPT", "--from", "a@example.org",
			"--to", "x@elsewhere.example.net")
		// swaks exits 24 when every recipient was refused.
		if code != 24 {
			t.Errorf("swaks exit %d, want 24:\n%s", code, out)
		}
		wantLine(t, out, "<** 554 5.7.1 <x@elsewhere.example.net>: Relay access denied")
		if n := len(h.Messages()); n != before {
			t.Errorf("%d messages handed off after a refused relay, want %d", n, before)
		}
	})
}

// submissionMainCF lets authenticated clients relay anywhere.
const submissionMainCF = `mynetworks = 192.0.2.0/24
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_tls_received_header = yes
`

func TestSwaksSubmissionSTARTTLS(t *testing.T) {
	oracle.Require(t, "swaks")
	cfg, h := clientsConfig(t, smtpserver.RoleSubmission, submissionMainCF)
	cfg.Auth = clientsAuth(t)
	ln := listenTCP(t)
	serveClients(t, cfg, ln)
	addr := ln.Addr().String()

	for _, tc := range []struct{ mech, user, pass string }{
		{"PLAIN", "alice@example.com", alicePass},
		{"LOGIN", "alice@example.com", alicePass},
		{"CRAM-MD5", "bob@example.com", bobPass},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			before := len(h.Messages())
			out, code := swaks(t, "--server", addr, "--tls", "--auth", tc.mech,
				"--auth-user", tc.user, "--auth-password", tc.pass,
				"--from", tc.user, "--to", "friend@example.net")
			if code != 0 {
				t.Fatalf("swaks exit %d:\n%s", code, out)
			}
			wantLine(t, out, "<-  220 2.0.0 Ready to start TLS")
			wantLine(t, out, "<~  235 2.7.0 Authentication successful")
			msgs := h.Messages()
			if len(msgs) != before+1 {
				t.Fatalf("%d messages handed off, want %d", len(msgs), before+1)
			}
			m := msgs[before]
			checkMessage(t, m, "client.example", "ESMTPSA", tc.user, []string{"friend@example.net"},
				"\r\n\r\nhello from swaks\r\n")
			if !strings.Contains(string(m.Data), "\t(using TLSv1.3 with cipher ") {
				t.Errorf("Received: header lacks the TLS line:\n%s", m.Data)
			}
			if s := m.Envelope.Session; s == nil || s.SASLMethod != tc.mech || s.SASLUsername != tc.user {
				t.Errorf("session %+v, want SASL %s %s", s, tc.mech, tc.user)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		before := len(h.Messages())
		out, code := swaks(t, "--server", addr, "--tls", "--auth", "PLAIN",
			"--auth-user", "alice@example.com", "--auth-password", "wrong",
			"--from", "alice@example.com", "--to", "friend@example.net")
		// swaks exits 28 when authentication fails.
		if code != 28 {
			t.Errorf("swaks exit %d, want 28:\n%s", code, out)
		}
		wantLine(t, out, "<~* 535 5.7.8 Error: authentication failed: (reason unavailable)")
		if n := len(h.Messages()); n != before {
			t.Errorf("%d messages handed off, want %d", n, before)
		}
	})

	t.Run("AUTH without TLS", func(t *testing.T) {
		// Submission has smtpd_tls_auth_only=yes: no AUTH is offered in
		// plaintext, and swaks, required to authenticate, gives up.
		out, code := swaks(t, "--server", addr, "--auth", "PLAIN",
			"--auth-user", "alice@example.com", "--auth-password", alicePass,
			"--from", "alice@example.com", "--to", "friend@example.net")
		if code != 28 {
			t.Errorf("swaks exit %d, want 28:\n%s", code, out)
		}
		if !strings.Contains(out, "Host did not advertise authentication") {
			t.Errorf("swaks did not report the missing AUTH:\n%s", out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "<-  250-AUTH") || strings.HasPrefix(l, "<-  250 AUTH") {
				t.Errorf("AUTH offered before STARTTLS: %s", l)
			}
		}
		// A client that sends AUTH anyway is stopped by the encrypt
		// level before AUTH runs (in Postfix's smtpd only the greeting,
		// STARTTLS, NOOP, RSET, QUIT, XCLIENT and XFORWARD come before
		// TLS), so its credentials are never looked at.
		c := smtptest.Dial(t, addr)
		c.Cmd("EHLO client.example")
		cred := base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00" + alicePass))
		if r := c.Cmd("AUTH PLAIN " + cred); r.String() != "530 5.7.0 Must issue a STARTTLS command first" {
			t.Errorf("AUTH in plaintext: %s", r)
		}
	})

	t.Run("MAIL without TLS", func(t *testing.T) {
		out, code := swaks(t, "--server", addr, "--from", "alice@example.com", "--to", "friend@example.net")
		if code != 23 {
			t.Errorf("swaks exit %d, want 23 (MAIL refused):\n%s", code, out)
		}
		wantLine(t, out, "<** 530 5.7.0 Must issue a STARTTLS command first")
	})
}

func TestSwaksSubmissionsTLSOnConnect(t *testing.T) {
	oracle.Require(t, "swaks")
	cfg, h := clientsConfig(t, smtpserver.RoleSubmissions, submissionMainCF)
	cfg.Auth = clientsAuth(t)
	tcp := listenTCP(t)
	ln, err := smtpserver.NewListener(tcp, smtpserver.ListenerConfig{Hostname: clientsHost, Service: "submissions"})
	if err != nil {
		t.Fatal(err)
	}
	serveClients(t, cfg, ln)
	addr := tcp.Addr().String()

	out, code := swaks(t, "--server", addr, "--tls-on-connect", "--auth", "CRAM-MD5",
		"--auth-user", "bob@example.com", "--auth-password", bobPass,
		"--from", "bob@example.com", "--to", "friend@example.net")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	wantLine(t, out, "<~  220 "+clientsHost+" ESMTP Postfix")
	wantLine(t, out, "<~  235 2.7.0 Authentication successful")
	msgs := h.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages handed off, want 1", len(msgs))
	}
	checkMessage(t, msgs[0], "client.example", "ESMTPSA", "bob@example.com", []string{"friend@example.net"},
		"\r\n\r\nhello from swaks\r\n")

	// Without authentication the submissions role refuses the client
	// (smtpd_client_restrictions=permit_sasl_authenticated,reject).
	out, code = swaks(t, "--server", addr, "--tls-on-connect", "--from", "bob@example.com", "--to", "friend@example.net")
	if code != 24 {
		t.Errorf("swaks exit %d, want 24:\n%s", code, out)
	}
	wantLine(t, out, "<~* 554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied")
	if n := len(h.Messages()); n != 1 {
		t.Errorf("%d messages handed off, want 1", n)
	}
}

// lmtpHandoff answers each LMTP recipient on its own: mailboxes named
// "full@..." are over quota.
type lmtpHandoff struct{ smtptest.Handoff }

type lmtpMessage struct {
	smtpserver.Message
}

func (h *lmtpHandoff) Open(ctx context.Context, env *smtpserver.Envelope) (smtpserver.Message, error) {
	m, err := h.Handoff.Open(ctx, env)
	if err != nil {
		return nil, err
	}
	return lmtpMessage{m}, nil
}

func (m lmtpMessage) CommitRecipients(ctx context.Context, env *smtpserver.Envelope) []error {
	errs := make([]error, len(env.Recipients))
	if err := m.Commit(ctx, env); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i, r := range env.Recipients {
		if strings.HasPrefix(r.Addr, "full@") {
			errs[i] = &smtpserver.ReplyError{Reply: restrictions.Reply{Code: 452, DSN: "4.2.2", Text: "Mailbox full"}}
		}
	}
	return errs
}

func TestSwaksLMTP(t *testing.T) {
	oracle.Require(t, "swaks")
	cfg, _ := clientsConfig(t, smtpserver.RoleLMTP, smtpMainCF)
	h := &lmtpHandoff{}
	cfg.Handoff = h
	sock := filepath.Join(t.TempDir(), "lmtp")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveClients(t, cfg, ln)

	out, code := swaks(t, "--socket", sock, "--protocol", "LMTP", "--from", "a@example.org",
		"--to", "one@example.com,full@example.com,two@example.com")
	// swaks exits 0 when at least one LMTP recipient was accepted.
	if code != 0 {
		t.Errorf("swaks exit %d:\n%s", code, out)
	}
	wantLine(t, out, "<-  220 "+clientsHost+" LMTP Postfix") // ConfigFrom: LMTP, not smtpd_banner
	wantLine(t, out, " -> LHLO client.example")
	msgs := h.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages handed off, want 1", len(msgs))
	}
	queued := func(rcpt string) string { return "250 2.0.0 <" + rcpt + "> Ok: queued as " + msgs[0].ID() }
	var replies []string
	after := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.HasSuffix(l, " -> .") {
			after = true
			continue
		}
		if strings.HasSuffix(l, " -> QUIT") {
			break
		}
		if after && (strings.HasPrefix(l, "<-  ") || strings.HasPrefix(l, "<** ")) {
			replies = append(replies, l[4:])
		}
	}
	want := []string{queued("one@example.com"), "452 4.2.2 <full@example.com> Mailbox full", queued("two@example.com")}
	if strings.Join(replies, "|") != strings.Join(want, "|") {
		t.Errorf("replies after the data %q, want %q\n%s", replies, want, out)
	}
	// A unix-socket client has no IP address; like Postfix's smtpd
	// (smtpd_peer_not_inet) the server takes it for "localhost
	// [127.0.0.1]".
	m := msgs[0]
	if m.Envelope.Sender != "a@example.org" || len(m.Envelope.Recipients) != 3 {
		t.Errorf("envelope %q %+v", m.Envelope.Sender, m.Envelope.Recipients)
	}
	data := string(m.Data)
	if !strings.HasPrefix(data, "Received: from client.example (localhost [127.0.0.1])") || !strings.Contains(data, " with LMTP id "+m.ID()) {
		t.Errorf("Received: header:\n%s", data)
	}
	if !strings.Contains(data, "\r\n\r\nhello from swaks\r\n") {
		t.Errorf("message text:\n%s", data)
	}
}

func TestSmtplibClient(t *testing.T) {
	py := oracle.Require(t, "python3")
	cfg, h := clientsConfig(t, smtpserver.RoleSubmission, submissionMainCF)
	cfg.Auth = clientsAuth(t)
	ln := listenTCP(t)
	serveClients(t, cfg, ln)
	host, port, _ := net.SplitHostPort(ln.Addr().String())

	out, code := run(t, py, filepath.Join("testdata", "clients", "send.py"), host, port,
		"bob@example.com", bobPass, "bob@example.com", "r1@example.net", "r2@example.org")
	if code != 0 {
		t.Fatalf("send.py exit %d:\n%s", code, out)
	}
	wantLine(t, out, "ehlo 250 starttls no-auth")
	wantLine(t, out, "starttls 220 2.0.0 Ready to start TLS")
	wantLine(t, out, "ehlo 250 auth=PLAIN LOGIN CRAM-MD5")
	wantLine(t, out, "login 235 2.7.0 Authentication successful")
	wantLine(t, out, "refused []")
	wantLine(t, out, "done")
	msgs := h.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages handed off, want 1", len(msgs))
	}
	m := msgs[0]
	checkMessage(t, m, "py.client.example", "ESMTPSA", "bob@example.com", []string{"r1@example.net", "r2@example.org"},
		"Subject: smtplib test\r\n\r\nhello from smtplib\r\n.leading dot line\r\n")
	// smtplib picks CRAM-MD5 first when it is offered.
	if s := m.Envelope.Session; s == nil || s.SASLMethod != "CRAM-MD5" || s.SASLUsername != "bob@example.com" {
		t.Errorf("session %+v, want CRAM-MD5 bob@example.com", s)
	}
}

func TestSMTPSourceClient(t *testing.T) {
	src := oracle.Require(t, "smtp-source")
	cfg, h := clientsConfig(t, smtpserver.RoleSMTP, smtpMainCF)
	cfg.TLS = nil
	ln := listenTCP(t)
	serveClients(t, cfg, ln)

	out, code := run(t, src, "-s", "5", "-m", "50", "-l", "2000", "-f", "a@example.com", "-t", "b@example.com",
		ln.Addr().String())
	if code != 0 {
		t.Fatalf("smtp-source exit %d:\n%s", code, out)
	}
	msgs := h.Messages()
	if len(msgs) != 50 {
		t.Fatalf("%d messages handed off, want 50", len(msgs))
	}
	ids := map[string]bool{}
	firstBody := ""
	for i, m := range msgs {
		ids[m.ID()] = true
		if m.Envelope.Sender != "a@example.com" || len(m.Envelope.Recipients) != 1 || m.Envelope.Recipients[0].Addr != "b@example.com" {
			t.Errorf("message %d: envelope %q %+v", i, m.Envelope.Sender, m.Envelope.Recipients)
			continue
		}
		data := string(m.Data)
		if !strings.HasPrefix(data, "Received: from ") || !strings.Contains(data, " id "+m.ID()+"\r\n\tfor <b@example.com>; ") {
			t.Errorf("message %d: Received: header:\n%.300s", i, data)
		}
		// -l 2000: 2000 bytes of lines of X, most numbered (smtp-source counts a
		// line end as two bytes), after smtp-source's own headers.
		_, body, ok := strings.Cut(data, "\r\n\r\n")
		if !ok || len(body) < 2000 || len(body) > 2002 {
			t.Errorf("message %d: body of %d bytes, want 2000:\n%q", i, len(body), body)
		}
		for _, l := range strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n") {
			if l == "" || strings.Trim(l, "0123456789X") != "" {
				t.Errorf("message %d: body line %q in\n%q", i, l, body)
				break
			}
		}
		if body != firstBody {
			if firstBody != "" {
				t.Errorf("message %d: body differs from the first message's", i)
			}
			firstBody = body
		}
	}
	if len(ids) != 50 {
		t.Errorf("%d distinct queue IDs, want 50", len(ids))
	}
}

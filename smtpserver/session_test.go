package smtpserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/restrictions"
)

func replyOf(code int, dsn, text string) restrictions.Reply {
	return restrictions.Reply{Code: code, DSN: dsn, Text: text}
}

func TestMessageDelivered(t *testing.T) {
	now := time.Date(2026, 11, 28, 3, 4, 5, 0, time.UTC)
	addr, h, logs := startServer(t, Config{Now: func() time.Time { return now }, Location: time.UTC})
	c, banner := dial(t, addr)
	if banner != "220 mx.oracle.test ESMTP Postfix" {
		t.Fatalf("banner %q", banner)
	}
	for _, l := range []string{"EHLO client.example", "MAIL FROM:<a@example.com> RET=HDRS ENVID=x+2By", "RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40example.com", "DATA"} {
		if r := c.cmd(l); r[0] != '2' && r[0] != '3' {
			t.Fatalf("%s: %s", l, r)
		}
	}
	c.send("Subject: hi\r\n\r\n..dot\r\nbare\nlf\r\n" + strings.Repeat("z", 5000) + "\r\n.\r\n")
	if r := c.read(); r != "250 2.0.0 Ok: queued as 4X0001A" {
		t.Fatalf("end of data: %s", r)
	}
	if r := c.cmd("QUIT"); r != "221 2.0.0 Bye" {
		t.Fatalf("QUIT: %s", r)
	}
	msgs := h.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	want := "Received: from client.example (unknown [127.0.0.1])\r\n" +
		"\tby mx.oracle.test (Postfix) with ESMTP id 4X0001A\r\n" +
		"\tfor <b@example.com>; Sat, 28 Nov 2026 03:04:05 +0000 (UTC)\r\n" +
		"Subject: hi\r\n\r\n.dot\r\nbare\r\nlf\r\n" + strings.Repeat("z", 5000) + "\r\n"
	if got := m.buf.String(); got != want {
		t.Errorf("message:\n%q\nwant\n%q", got, want)
	}
	env := m.env
	if env.Sender != "a@example.com" || env.Ret != "HDRS" || env.EnvID != "x+y" || len(env.Recipients) != 1 ||
		env.Recipients[0].ORCPT != "rfc822;b@example.com" || strings.Join(env.Recipients[0].Notify, ",") != "SUCCESS,FAILURE" {
		t.Errorf("envelope %+v %+v", env, env.Recipients)
	}
	waitLog(t, logs, "disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
	waitLog(t, logs, "4X0001A: client=unknown[127.0.0.1]")
}

func waitLog(t *testing.T, logs *logBuffer, line string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range logs.all() {
			if l == line {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("log lacks %q:\n%s", line, strings.Join(logs.all(), "\n"))
}

func TestHandoffFailureIsTemporary(t *testing.T) {
	addr, h, _ := startServer(t, Config{})
	h.failCommit = errors.New("disk full")
	c, _ := dial(t, addr)
	c.cmd("EHLO c.example")
	c.cmd("MAIL FROM:<a@example.com>")
	c.cmd("RCPT TO:<b@example.com>")
	c.cmd("DATA")
	c.send("x\r\n.\r\n")
	if r := c.read(); r != "451 4.3.0 Error: queue file write error" {
		t.Errorf("failed commit: %s", r)
	}
	h.failCommit = nil
	h.failOpen = errors.New("no space")
	c.cmd("MAIL FROM:<a@example.com>")
	if r := c.cmd("RCPT TO:<b@example.com>"); r != "451 4.3.0 Error: queue file write error" {
		t.Errorf("failed open: %s", r)
	}
}

func TestTimeoutIsSticky(t *testing.T) {
	addr, _, logs := startServer(t, Config{Timeout: 200 * time.Millisecond})
	c, _ := dial(t, addr)
	c.cmd("EHLO c.example")
	if r := c.read(); r != "421 4.4.2 mx.oracle.test Error: timeout exceeded" {
		t.Errorf("after idling: %q", r)
	}
	if r := c.read(); r != "(closed)" {
		t.Errorf("after the timeout: %q", r)
	}
	waitLog(t, logs, "timeout after EHLO from unknown[127.0.0.1]")
}

func TestDataIdleTimeout(t *testing.T) {
	addr, h, logs := startServer(t, Config{Timeout: time.Minute, DataIdleTimeout: 200 * time.Millisecond})
	c, _ := dial(t, addr)
	c.cmd("EHLO c.example")
	c.cmd("MAIL FROM:<a@example.com>")
	c.cmd("RCPT TO:<b@example.com>")
	c.cmd("DATA")
	c.send("part\r\n")
	if r := c.read(); r != "421 4.4.2 mx.oracle.test Error: timeout exceeded" {
		t.Errorf("idle in DATA: %q", r)
	}
	waitLog(t, logs, "timeout after DATA (6 bytes) from unknown[127.0.0.1]")
	if len(h.messages()) != 0 {
		t.Errorf("a timed-out message was committed")
	}
}

// TestSlowSteadyClient: the timeouts apply to each read, not to a line
// or the whole message; a client that sends one line in pieces, each
// within the timeout, is served however long the line takes.
func TestSlowSteadyClient(t *testing.T) {
	addr, h, _ := startServer(t, Config{Timeout: 300 * time.Millisecond, DataIdleTimeout: 300 * time.Millisecond})
	c, _ := dial(t, addr)
	for _, piece := range []string{"EH", "LO c.ex", "ample\r\n"} {
		c.send(piece)
		time.Sleep(120 * time.Millisecond)
	}
	if r := c.read(); !strings.HasPrefix(r, "250") {
		t.Fatalf("EHLO sent slowly: %q", r)
	}
	c.cmd("MAIL FROM:<a@example.com>")
	c.cmd("RCPT TO:<b@example.com>")
	c.cmd("DATA")
	c.send("Subject: slow\r\n\r\n")
	for range 8 {
		time.Sleep(120 * time.Millisecond)
		c.send(strings.Repeat("x", 100))
	}
	if r := c.cmd("\r\n."); !strings.HasPrefix(r, "250 2.0.0 Ok: queued") {
		t.Fatalf("end of a slow message: %q", r)
	}
	if n := len(h.messages()); n != 1 {
		t.Errorf("%d messages committed, want 1", n)
	}
}

func TestShutdownFinishesTransaction(t *testing.T) {
	h := &memHandoff{}
	srv, err := New(Config{Hostname: "mx.test", Handoff: h})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	go srv.Serve(ln)
	c, _ := dial(t, ln.Addr().String())
	idle, _ := dial(t, ln.Addr().String())
	c.cmd("EHLO c.example")
	c.cmd("MAIL FROM:<a@example.com>")
	c.cmd("RCPT TO:<b@example.com>")
	c.cmd("DATA")
	c.send("half\r\n")
	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	if r := idle.read(); !strings.HasPrefix(r, "421 4.3.2 ") {
		t.Errorf("idle session at shutdown: %q", r)
	}
	time.Sleep(50 * time.Millisecond)
	c.send("rest\r\n.\r\n")
	if r := c.read(); !strings.HasPrefix(r, "250 2.0.0 Ok: queued as ") {
		t.Errorf("transaction in flight: %q", r)
	}
	if r := c.read(); !strings.HasPrefix(r, "421 4.3.2 ") {
		t.Errorf("after the transaction: %q", r)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// plainBackend is a one-user SASL PLAIN database for tests.
type plainBackend struct{ user, pass string }

func (b plainBackend) Mechanisms(tls bool) []string { return []string{"PLAIN"} }
func (b plainBackend) NewMech(name string) (auth.ServerMech, error) {
	if name != "PLAIN" {
		return nil, auth.ErrMechanism
	}
	return &plainMech{b: b}, nil
}

type plainMech struct {
	b    plainBackend
	user string
}

func (m *plainMech) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
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
func (m *plainMech) User() string { return m.user }

func TestAuth(t *testing.T) {
	addr, _, logs := startServer(t, Config{Auth: plainBackend{"u", "p"}})
	c, _ := dial(t, addr)
	// Postfix 3.7 takes AUTH before HELO/EHLO (auth_oracle_test.go).
	if r := c.cmd("AUTH PLAIN"); r != "334" {
		t.Errorf("AUTH before EHLO: %s", r)
	}
	if r := c.cmd("*"); r != "501 5.7.0 Authentication aborted" {
		t.Errorf("cancel: %s", r)
	}
	if r := c.cmd("EHLO c.example"); !strings.Contains(r, "250-AUTH PLAIN\n") {
		t.Errorf("EHLO lacks AUTH: %s", r)
	}
	if r := c.cmd("AUTH CRAM-MD5"); r != "535 5.7.8 Error: authentication failed: Invalid authentication mechanism" {
		t.Errorf("unknown mechanism: %s", r)
	}
	bad := base64.StdEncoding.EncodeToString([]byte("\x00u\x00x"))
	if r := c.cmd("AUTH PLAIN " + bad); r != "535 5.7.8 Error: authentication failed: (reason unavailable)" {
		t.Errorf("bad password: %s", r)
	}
	if r := c.cmd("AUTH PLAIN"); r != "334" {
		t.Errorf("challenge: %q", r)
	}
	if r := c.cmd("*"); r != "501 5.7.0 Authentication aborted" {
		t.Errorf("cancel: %s", r)
	}
	c.cmd("AUTH PLAIN")
	if r := c.cmd(base64.StdEncoding.EncodeToString([]byte("\x00u\x00p"))); r != "235 2.7.0 Authentication successful" {
		t.Errorf("good password: %s", r)
	}
	if r := c.cmd("AUTH PLAIN"); r != "503 5.5.1 Error: already authenticated" {
		t.Errorf("second AUTH: %s", r)
	}
	c.cmd("MAIL FROM:<a@example.com>")
	c.cmd("RCPT TO:<b@example.com>")
	waitLog(t, logs, "4X0001A: client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=u")
}

func TestLMTPPerRecipient(t *testing.T) {
	h := &lmtpHandoff{}
	addr, _, _ := startServer(t, Config{Role: RoleLMTP, Handoff: h})
	c, banner := dial(t, addr)
	if banner != "220 mx.oracle.test LMTP Postfix" {
		t.Errorf("banner %q", banner)
	}
	if r := c.cmd("EHLO c.example"); r != "500 5.5.2 Error: command not recognized" {
		t.Errorf("EHLO in LMTP: %s", r)
	}
	c.cmd("LHLO c.example")
	c.cmd("MAIL FROM:<a@example.com>")
	c.cmd("RCPT TO:<ok@example.com>")
	c.cmd("RCPT TO:<full@example.com>")
	c.cmd("DATA")
	c.send("x\r\n.\r\n")
	if r := c.read(); r != "250 2.0.0 <ok@example.com> Ok: queued as L1" {
		t.Errorf("first recipient: %s", r)
	}
	if r := c.read(); r != "452 4.2.2 <full@example.com> Mailbox full" {
		t.Errorf("second recipient: %s", r)
	}
}

type lmtpHandoff struct{}

type lmtpMsg struct{ memMsg }

func (lmtpHandoff) Open(ctx context.Context, env *Envelope) (Message, error) {
	return &lmtpMsg{memMsg{id: "L1"}}, nil
}

func (m *lmtpMsg) CommitRecipients(ctx context.Context, env *Envelope) []error {
	errs := make([]error, len(env.Recipients))
	for i, r := range env.Recipients {
		if strings.HasPrefix(r.Addr, "full@") {
			errs[i] = &ReplyError{Reply: replyOf(452, "4.2.2", "Mailbox full")}
		}
	}
	return errs
}

func TestStartTLS(t *testing.T) {
	cert, err := SelfSigned("mx.oracle.test")
	if err != nil {
		t.Fatal(err)
	}
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	addr, h, _ := startServer(t, Config{TLS: srvTLS, TLSLevel: TLSEncrypt, TLSReceivedHeader: true})
	c, _ := dial(t, addr)
	if r := c.cmd("EHLO c.example"); !strings.Contains(r, "\n250-STARTTLS\n") {
		t.Fatalf("EHLO lacks STARTTLS: %s", r)
	}
	if r := c.cmd("MAIL FROM:<a@example.com>"); r != "530 5.7.0 Must issue a STARTTLS command first" {
		t.Errorf("MAIL before TLS: %s", r)
	}
	// A command pipelined after STARTTLS in plaintext must be dropped
	// (CVE-2011-0411).
	c.send("STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
	if r := c.read(); r != "220 2.0.0 Ready to start TLS" {
		t.Fatalf("STARTTLS: %s", r)
	}
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c = tc
	c.br = bufio.NewReader(tc)
	if r := c.cmd("MAIL FROM:<a@example.com>"); r != "503 5.5.1 Error: send HELO/EHLO first" && r != "250 2.1.0 Ok" {
		t.Errorf("MAIL after TLS: %s", r)
	}
	c.cmd("RSET")
	if r := c.cmd("EHLO c.example"); strings.Contains(r, "STARTTLS") {
		t.Errorf("STARTTLS offered twice: %s", r)
	}
	c.cmd("MAIL FROM:<a@example.com>")
	c.cmd("RCPT TO:<b@example.com>")
	c.cmd("DATA")
	c.send("x\r\n.\r\n")
	if r := c.read(); !strings.HasPrefix(r, "250 2.0.0 Ok: queued as") {
		t.Fatalf("DATA over TLS: %s", r)
	}
	m := h.messages()[0]
	if !strings.Contains(m.buf.String(), "\t(using TLSv1.3 with cipher TLS_") || !strings.Contains(m.buf.String(), "with ESMTPS id") {
		t.Errorf("Received header without TLS details:\n%s", m.buf.String())
	}
	if m.env.Sender != "a@example.com" {
		t.Errorf("sender %q: the injected command was executed", m.env.Sender)
	}
}

func TestRestrictionEffects(t *testing.T) {
	c, err := config.Parse("main.cf", strings.NewReader(`myhostname = mx.oracle.test
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access inline:{{tag@example.com=PREPEND X-Tag: yes}}, check_recipient_access inline:{{hold@example.com=HOLD}}
smtpd_end_of_data_restrictions = check_sender_access inline:{{big@example.com=REJECT too much}}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFrom(context.Background(), c, RoleSMTP, restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr, h, _ := startServer(t, cfg)
	cl, _ := dial(t, addr)
	cl.cmd("EHLO c.example")
	cl.cmd("MAIL FROM:<a@example.com>")
	cl.cmd("RCPT TO:<tag@example.com>")
	cl.cmd("RCPT TO:<hold@example.com>")
	cl.cmd("DATA")
	cl.send("x\r\n.\r\n")
	if r := cl.read(); !strings.HasPrefix(r, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("DATA: %s", r)
	}
	m := h.messages()[0]
	if !strings.HasPrefix(m.buf.String(), "X-Tag: yes\r\nReceived: from c.example") {
		t.Errorf("PREPEND not above Received:\n%s", m.buf.String())
	}
	if !m.env.Effects.Hold {
		t.Errorf("HOLD lost: %+v", m.env.Effects)
	}
	cl.cmd("MAIL FROM:<big@example.com>")
	cl.cmd("RCPT TO:<b@example.com>")
	cl.cmd("DATA")
	cl.send("x\r\n.\r\n")
	if r := cl.read(); r != "554 5.7.1 <big@example.com>: Sender address rejected: too much" {
		t.Errorf("end-of-data reject: %s", r)
	}
	if n := len(h.messages()); n != 1 {
		t.Errorf("%d messages committed", n)
	}
}

func TestSubmissionRole(t *testing.T) {
	dir := t.TempDir()
	cert, err := SelfSigned("mx.oracle.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteCertificatePEM(cert, dir+"/cert.pem", dir+"/key.pem"); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("main.cf", strings.NewReader("myhostname = mx.oracle.test\nmynetworks = 192.0.2.0/24\n"+
		"smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination\n"+
		"smtpd_tls_cert_file = "+dir+"/cert.pem\nsmtpd_tls_key_file = "+dir+"/key.pem\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFrom(context.Background(), c, RoleSubmission, restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = plainBackend{"u", "p"}
	addr, _, _ := startServer(t, cfg)
	cl, _ := dial(t, addr)
	if r := cl.cmd("EHLO c.example"); strings.Contains(r, "AUTH") || !strings.Contains(r, "STARTTLS") {
		t.Errorf("EHLO before TLS: %s", r)
	}
	if r := cl.cmd("MAIL FROM:<a@example.com>"); r != "530 5.7.0 Must issue a STARTTLS command first" {
		t.Errorf("MAIL before TLS: %s", r)
	}
	if r := cl.cmd("STARTTLS"); r != "220 2.0.0 Ready to start TLS" {
		t.Fatalf("STARTTLS: %s", r)
	}
	tc := tls.Client(cl.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl.c, cl.br = tc, bufio.NewReader(tc)
	if r := cl.cmd("EHLO c.example"); !strings.Contains(r, "250-AUTH PLAIN") {
		t.Errorf("EHLO after TLS: %s", r)
	}
	cl.cmd("MAIL FROM:<a@example.com>")
	if r := cl.cmd("RCPT TO:<b@example.net>"); r != "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied" {
		t.Errorf("RCPT without AUTH: %s", r)
	}
	cl.cmd("RSET")
	if r := cl.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00u\x00p"))); r != "235 2.7.0 Authentication successful" {
		t.Fatalf("AUTH: %s", r)
	}
	cl.cmd("MAIL FROM:<a@example.com>")
	if r := cl.cmd("RCPT TO:<b@example.net>"); r != "250 2.1.5 Ok" {
		t.Errorf("RCPT after AUTH: %s", r)
	}
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// The quick start: the server started with no configuration creates its
// user and certificate, takes mail on SMTP (swaks, no login), submission
// (swaks, STARTTLS + AUTH with the printed password) and submissions
// (Python's smtplib, implicit TLS + AUTH), and delivers it to the Maildir
// with Return-Path and Delivered-To; it logs in Postfix's format, exits 0
// on SIGTERM and keeps its user, certificate and queue over a restart.
func TestQuickStart(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	pw := p.password()
	if len(pw) < 12 {
		t.Fatalf("no password for demo in the start-up report %q", p.out)
	}
	data := filepath.Join(dir, "data")
	cert, err := os.ReadFile(filepath.Join(data, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}

	swaks(t, "-s", p.addrs["smtp"], "-f", "alice@example.com", "-t", "demo@localhost",
		"--header", "Subject: plain smtp", "--body", "one")
	swaks(t, "-s", p.addrs["submission"], "-tls", "-a", "PLAIN", "-au", "demo", "-ap", pw,
		"-f", "demo@localhost", "-t", "demo@localhost", "--header", "Subject: submission", "--body", "two")
	// Submission without a login is refused.
	out, err := run(t, "swaks", "-s", p.addrs["submission"], "-tls", "-f", "demo@localhost", "-t", "demo@localhost")
	if err == nil || !regexp.MustCompile(`<~\*? +5\d\d `).MatchString(out) {
		t.Errorf("submission without AUTH was not refused with 5xx (err %v):\n%s", err, out)
	}
	oracle.Require(t, "python3")
	py := `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP_SSL(host, int(port), context=ctx) as s:
    s.login("demo", sys.argv[2])
    s.sendmail("demo@localhost", ["demo@localhost"], "Subject: submissions\r\n\r\nthree\r\n")
`
	if out, err := run(t, "python3", "-c", py, p.addrs["submissions"], pw, filepath.Join(data, "tls", "cert.pem")); err != nil {
		t.Fatalf("smtplib over submissions: %v\n%s", err, out)
	}

	files := waitFiles(t, filepath.Join(data, "mail", "demo", "Maildir", "new"), 3)
	subjects := map[string]bool{}
	for _, f := range files {
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := strings.Cut(string(msg), "\n\n")
		if !strings.HasPrefix(head, "Return-Path: <") || !strings.Contains(head, "\nDelivered-To: demo@localhost\n") {
			t.Errorf("%s lacks Return-Path first or Delivered-To:\n%s", f, head)
		}
		if strings.Contains(string(msg), "\r\n") {
			t.Errorf("%s has CRLF line ends", f)
		}
		if m := regexp.MustCompile(`(?m)^Subject: (.*)$`).FindStringSubmatch(head); m != nil {
			subjects[m[1]] = true
		}
	}
	for _, s := range []string{"plain smtp", "submission", "submissions"} {
		if !subjects[s] {
			t.Errorf("no message with Subject %q in the Maildir (have %v)", s, subjects)
		}
	}
	if !anyContains(t, files, "(Authenticated sender: demo)") {
		t.Errorf("no Received: line shows the authenticated sender")
	}

	log := waitLog(t, p.logPath, "status=sent (delivered to maildir)")
	syslog := regexp.MustCompile(`^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ postfix/[a-z/-]+\[\d+\]: `)
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if !syslog.MatchString(l) {
			t.Errorf("log line not in syslog form: %q", l)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`postfix/smtpd\[\d+\]: [0-9A-Za-z]+: client=unknown\[127\.0\.0\.1\]`),
		regexp.MustCompile(`postfix/submission/smtpd\[\d+\]: [0-9A-Za-z]+: client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username=demo`),
		regexp.MustCompile(`postfix/qmgr\[\d+\]: [0-9A-Za-z]+: from=<alice@example\.com>, size=\d+, nrcpt=1 \(queue active\)`),
		regexp.MustCompile(`postfix/local\[\d+\]: [0-9A-Za-z]+: to=<demo@localhost>, relay=local, delay=[0-9.]+, delays=[0-9./]+, dsn=2\.0\.0, status=sent \(delivered to maildir\)`),
	} {
		if !want.MatchString(log) {
			t.Errorf("the log has no line matching %s:\n%s", want, log)
		}
	}

	if err := p.stop(t); err != nil {
		t.Fatalf("SIGTERM: exit %v, want 0; stderr: %s", err, p.stderr)
	}

	// A restart keeps the user (no new password: the old one still
	// works) and the certificate.
	p2 := startServer(t, dir)
	if p2.password() != "" {
		t.Errorf("the restart created the user again: %q", p2.out)
	}
	if cert2, _ := os.ReadFile(filepath.Join(data, "tls", "cert.pem")); !bytes.Equal(cert, cert2) {
		t.Errorf("the restart replaced the certificate")
	}
	swaks(t, "-s", p2.addrs["submission"], "-tls", "-a", "PLAIN", "-au", "demo", "-ap", pw,
		"-f", "demo@localhost", "-t", "demo@localhost", "--header", "Subject: after restart")
	waitFiles(t, filepath.Join(data, "mail", "demo", "Maildir", "new"), 4)
	if err := p2.stop(t); err != nil {
		t.Fatalf("SIGTERM after restart: exit %v; stderr: %s", err, p2.stderr)
	}
}

// A message that cannot be delivered yet stays queued over a restart,
// and the queue commands see it through the running server's control
// socket.
func TestQueueKeptOverRestart(t *testing.T) {
	dir := t.TempDir()
	conf := writeConfig(t, dir, "")
	p := startServer(t, dir, "-config", conf)
	swaks(t, "-s", p.addrs["smtp"], "-f", "demo@localhost", "-t", "later@defer.test", "--header", "Subject: wait")
	waitLog(t, p.logPath, "to=<later@defer.test>", "status=deferred")
	if err := p.stop(t); err != nil {
		t.Fatalf("SIGTERM: exit %v; stderr: %s", err, p.stderr)
	}
	p2 := startServer(t, dir, "-config", conf)
	out := mailq(t, dir, conf)
	if !strings.Contains(out, "later@defer.test") || !strings.Contains(out, "demo@localhost") {
		t.Errorf("the deferred message is not in the queue listing after the restart:\n%s", out)
	}
	if err := p2.stop(t); err != nil {
		t.Fatalf("SIGTERM: exit %v; stderr: %s", err, p2.stderr)
	}
}

// mailq lists the running server's queue with "postkit postqueue -p",
// which must reach it through the control socket (not fall back to
// reading the queue directory).
func mailq(t *testing.T, dir, conf string) string {
	t.Helper()
	pk := filepath.Join(dir, "postkit")
	if out, err := exec.Command("go", "build", "-o", pk, "github.com/postkit-mail/postkit/cmd/postkit").CombinedOutput(); err != nil {
		t.Fatalf("building postkit: %v\n%s", err, out)
	}
	out, err := exec.Command(pk, "postqueue", "-c", conf, "-p").CombinedOutput()
	if err != nil {
		t.Fatalf("postkit postqueue -p: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "Mail system is down") {
		t.Errorf("postqueue did not reach the running server:\n%s", out)
	}
	return string(out)
}

// writeConfig writes a -config directory for a test: the built-in
// main.cf with the queue under dir/data and routing for the test
// domains (bounce.test bounces, defer.test defers), plus extra.
func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	conf := filepath.Join(dir, "etc")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	text := strings.ReplaceAll(builtinMainCF, "@DATA@", data) + `
transport_maps = texthash:` + conf + `/transport
` + extra
	write(t, filepath.Join(conf, "main.cf"), text)
	write(t, filepath.Join(conf, "transport"), "bounce.test error:5.1.1 mailbox unavailable\ndefer.test retry:4.4.1 try again later\n")
	return conf
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func anyContains(t *testing.T, paths []string, s string) bool {
	for _, p := range paths {
		if strings.Contains(mustRead(t, p), s) {
			return true
		}
	}
	return false
}

// No open relay: a client outside mynetworks (127.0.0.2, with mynetworks
// narrowed to 127.0.0.1/32) may send to the local domain but not
// elsewhere; from inside mynetworks relaying is allowed.
func TestNoOpenRelay(t *testing.T) {
	dir := t.TempDir()
	conf := writeConfig(t, dir, "mynetworks = 127.0.0.1/32\n")
	p := startServer(t, dir, "-config", conf)
	r := smtpDialogue(t, "127.0.0.2", p.addrs["smtp"], "EHLO outside.example", "MAIL FROM:<x@outside.example>",
		"RCPT TO:<victim@example.org>", "RCPT TO:<demo@localhost>", "QUIT")
	if !strings.HasPrefix(r[3], "554 5.7.1 <victim@example.org>: Relay access denied") {
		t.Errorf("relay from outside mynetworks: %q, want 554 5.7.1 Relay access denied", r[3])
	}
	if !strings.HasPrefix(r[4], "250 ") {
		t.Errorf("local recipient from outside mynetworks: %q, want 250", r[4])
	}
	r = smtpDialogue(t, "127.0.0.1", p.addrs["smtp"], "EHLO inside.example", "MAIL FROM:<x@localhost>",
		"RCPT TO:<friend@example.org>", "QUIT")
	if !strings.HasPrefix(r[3], "250 ") {
		t.Errorf("relay from mynetworks: %q, want 250", r[3])
	}
	p.stop(t)
}

// SIGHUP rereads main.cf and its tables: an access table added to the
// restrictions after start rejects a recipient only after the reload.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	conf := writeConfig(t, dir, "")
	p := startServer(t, dir, "-config", conf)
	rcpt := []string{"EHLO c.example", "MAIL FROM:<x@localhost>", "RCPT TO:<demo@localhost>", "QUIT"}
	if r := smtpDialogue(t, "127.0.0.1", p.addrs["smtp"], rcpt...); !strings.HasPrefix(r[3], "250 ") {
		t.Fatalf("before the reload: %q", r[3])
	}
	write(t, filepath.Join(conf, "access"), "demo@localhost REJECT closed for the test\n")
	text := mustRead(t, filepath.Join(conf, "main.cf")) +
		"smtpd_recipient_restrictions = check_recipient_access texthash:" + conf + "/access\n"
	write(t, filepath.Join(conf, "main.cf"), text)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p.logPath, "postfix/master", "reload --")
	r := smtpDialogue(t, "127.0.0.1", p.addrs["smtp"], rcpt...)
	if !strings.HasPrefix(r[3], "554 5.7.1 <demo@localhost>: Recipient address rejected: closed for the test") {
		t.Errorf("after the reload: %q, want the access table's REJECT", r[3])
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

// pflogsumm, Debian's Postfix log summariser, reads the log of a mixed
// run and reports the counts the test produced: received, delivered,
// deferred, bounced, rejected.
func TestPflogsumm(t *testing.T) {
	pfl := oracle.Require(t, "pflogsumm")
	dir := t.TempDir()
	conf := writeConfig(t, dir, "mynetworks = 127.0.0.1/32\n")
	p := startServer(t, dir, "-config", conf)
	smtp := p.addrs["smtp"]
	for i := range 3 {
		swaks(t, "-s", smtp, "-f", "demo@localhost", "-t", "demo@localhost", "--header", "Subject: delivered "+string(rune('a'+i)))
	}
	swaks(t, "-s", smtp, "-f", "demo@localhost", "-t", "nobody@bounce.test", "--header", "Subject: bounced")
	swaks(t, "-s", smtp, "-f", "demo@localhost", "-t", "somebody@defer.test", "--header", "Subject: deferred")
	// Two rejections: an unknown local user, and relaying from outside
	// mynetworks.
	smtpDialogue(t, "127.0.0.1", smtp, "EHLO c.example", "MAIL FROM:<demo@localhost>", "RCPT TO:<unknown@localhost>", "QUIT")
	smtpDialogue(t, "127.0.0.2", smtp, "EHLO c.example", "MAIL FROM:<x@outside.example>", "RCPT TO:<victim@example.org>", "QUIT")
	// The bounce goes back to demo: 3 + 1 messages in the Maildir.
	waitFiles(t, filepath.Join(dir, "data", "mail", "demo", "Maildir", "new"), 4)
	waitLog(t, p.logPath, "status=deferred (try again later)", "status=bounced (mailbox unavailable)")
	time.Sleep(200 * time.Millisecond)
	if err := p.stop(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	out, err := run(t, "perl", pfl, p.logPath)
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	want := map[string]int{"received": 5, "delivered": 4, "deferred": 1, "bounced": 1, "rejected": 2}
	for what, n := range want {
		m := regexp.MustCompile(`(?m)^\s+(\d+)\s+` + what + `\b`).FindStringSubmatch(out)
		if m == nil || m[1] != strconv.Itoa(n) {
			t.Errorf("pflogsumm %s: %v, want %d\n%s", what, m, n, out)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", mustRead(t, p.logPath))
	}
}

// master.cf in the -config directory defines the transports: a pipe(8)
// service routed by transport_maps gets the message on its standard
// input, with the From_ line and Return-Path its flags ask for.
func TestPipeTransport(t *testing.T) {
	dir := t.TempDir()
	conf := writeConfig(t, dir, "")
	out := filepath.Join(dir, "pipe-out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	// Under root the command runs as nobody, which must reach out.
	for _, d := range []string{out, dir, filepath.Dir(dir)} {
		os.Chmod(d, 0o755)
	}
	os.Chmod(out, 0o777)
	write(t, filepath.Join(conf, "transport"), "pipe.test pipeit:\n")
	write(t, filepath.Join(conf, "master.cf"), `smtp      unix  -       -       n       -       -       smtp
local     unix  -       n       n       -       -       local
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
pipeit    unix  -       n       n       -       -       pipe
  flags=FR user=nobody directory=/ argv=/bin/dd of=`+out+`/${user}.msg status=none
`)
	p := startServer(t, dir, "-config", conf)
	swaks(t, "-s", p.addrs["smtp"], "-f", "demo@localhost", "-t", "carol@pipe.test", "--header", "Subject: piped")
	log := waitLog(t, p.logPath, "to=<carol@pipe.test>")
	if !regexp.MustCompile(`postfix/pipe\[\d+\]: \w+: to=<carol@pipe\.test>, relay=pipeit, .*status=sent \(delivered via pipeit service\)`).MatchString(log) {
		t.Errorf("no pipe delivery line in the log:\n%s", log)
	}
	got := mustRead(t, filepath.Join(out, "carol.msg"))
	if !strings.HasPrefix(got, "From demo@localhost ") || !strings.Contains(got, "\nReturn-Path: <demo@localhost>\n") ||
		!strings.Contains(got, "Subject: piped") {
		t.Errorf("the command got:\n%s", got)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

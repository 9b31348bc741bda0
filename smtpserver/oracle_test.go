package smtpserver

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
)

// step is one write of a dialogue and the number of replies it gets.
type step struct {
	send    string
	replies int
}

// dialogue is a conversation run unchanged against Postfix and against
// this package's server.
type dialogue struct {
	name  string
	steps []step
}

// cmds makes one step per command line, one reply each.
func cmds(lines ...string) []step {
	var out []step
	for _, l := range lines {
		out = append(out, step{l + "\r\n", 1})
	}
	return out
}

var queueIDRe = regexp.MustCompile(`queued as [0-9A-Za-z]+`)

// run plays d against addr and returns the replies, queue IDs masked.
func (d dialogue) run(t *testing.T, addr string) []string {
	c, banner := dial(t, addr)
	defer c.c.Close()
	out := []string{banner}
	for _, st := range d.steps {
		c.send(st.send)
		for i := 0; i < st.replies; i++ {
			r := c.read()
			out = append(out, queueIDRe.ReplaceAllString(r, "queued as ID"))
			if r == "(closed)" {
				return out
			}
		}
	}
	return out
}

// oracleMain is the main.cf both servers run with in the protocol
// dialogues.
const oracleMain = `smtpd_recipient_limit = 3
message_size_limit = 2000
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access inline:{{blocked@example.com=REJECT no thanks}}
`

// startPair starts Postfix and this server with the same main.cf.
func startPair(t *testing.T, main string) (postfixAddr, ourAddr string, h *memHandoff, logs *logBuffer) {
	t.Helper()
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
	c, err := config.Parse("main.cf", strings.NewReader(p.MainCF()))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFrom(context.Background(), c, RoleSMTP, restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr, h, logs := startServer(t, cfg)
	return p.Addr, addr, h, logs
}

func compareDialogues(t *testing.T, pf, ours string, ds []dialogue) {
	for _, d := range ds {
		want := d.run(t, pf)
		got := d.run(t, ours)
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("%s: replies differ\n--- Postfix:\n%s\n--- postkit:\n%s", d.name,
				strings.Join(want, "\n"), strings.Join(got, "\n"))
		}
	}
}

func TestProtocolAgainstPostfix(t *testing.T) {
	pf, ours, _, _ := startPair(t, oracleMain)
	body := "Subject: test\r\n\r\nhello\r\n.\r\n"
	ds := []dialogue{
		{"ehlo", cmds("EHLO client.example", "HELO client.example", "EHLO", "HELO", "QUIT")},
		{"mail ok", append(cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"),
			step{body, 1}, step{"QUIT\r\n", 1})},
		{"nested", cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "MAIL FROM:<a@example.com>", "RSET", "RSET x", "NOOP", "NOOP x")},
		{"order", cmds("EHLO c.example", "RCPT TO:<b@example.com>", "DATA", "MAIL FROM:<a@example.com>", "DATA", "DATA x")},
		{"mail syntax", cmds("EHLO c.example", "MAIL FROM", "MAIL FROM:", "MAIL TO:<a@example.com>",
			"MAIL FROM:<a@example.com> FOO=bar", "MAIL FROM:<a@example.com> SIZE=abc", "MAIL FROM:<a@example.com> SIZE=99999",
			"MAIL FROM:<a@example.com> BODY=X", "MAIL FROM:<a@example.com> RET=X", "MAIL FROM:<a@example.com> ENVID=a+ZZ",
			"MAIL FROM:<a@b c>", "MAIL FROM:<a@example.com> AUTH=<>", "MAIL FROM: <a@example.com>", "RSET",
			"MAIL FROM:a@example.com", "RSET", "MAIL FROM:<> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2By SIZE=100")},
		{"rcpt syntax", cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:", "RCPT TO:<>", "RCPT FROM:<b@example.com>",
			"RCPT TO:<b@example.com> NOTIFY=FOO", "RCPT TO:<b@example.com> ORCPT=xx", "RCPT TO:<b@example.com> FOO",
			"RCPT TO:<b@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+40example.com", "RCPT TO:<postmaster>",
			"RCPT TO:<blocked@example.com>", "RCPT TO:<c@example.com>", "RCPT TO:<d@example.com>")},
		{"no valid rcpt", cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<blocked@example.com>", "DATA")},
		{"vrfy", cmds("EHLO c.example", "VRFY <a b>", "VRFY a b", "VRFY <a@example.com>", "MAIL FROM:<a@example.com>", "VRFY x", "ETRN x", "DATA x", "XCLIENT ADDR=127.0.0.3", "XFORWARD NAME=x")},
		{"dot command", cmds("EHLO c.example", ".", "NOOP")},
		{"helo first", cmds("ETRN example.com", "MAIL FROM:<a@example.com>", "ETRN example.com", "AUTH PLAIN", "HELO c.example", "MAIL FROM:<a@example.com>", "HELO d.example", "RCPT TO:<b@example.com>")},
		{"misc", cmds("EHLO c.example", "FOO", "", "VRFY", "VRFY a@example.com", "ETRN", "ETRN example.com", "HELP", "EXPN x", "QUIT")},
		{"forbidden", cmds("EHLO c.example", "Subject: hello", "NOOP")},
		{"forbidden get", cmds("EHLO c.example", "GET / HTTP/1.0", "NOOP")},
		{"forbidden post", cmds("POST /x HTTP/1.1", "NOOP")},
		{"forbidden to", cmds("EHLO c.example", "To: someone", "X-Mailer: x", "NOOP")},
		{"forbidden digit", cmds("EHLO c.example", "1abc", "NOOP")},
		{"forbidden lower", cmds("EHLO c.example", "noop", "received: x", "NOOP")},
		{"too big", append(cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"),
			step{"Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 40) + ".\r\n", 1}, step{"NOOP\r\n", 1})},
		{"long body line", append(cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"),
			step{"Subject: x\r\n\r\n" + strings.Repeat("y", 1900) + "\r\n.\r\n", 1})},
		{"pipelining", []step{{"EHLO c.example\r\n", 1},
			{"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<blocked@example.com>\r\nDATA\r\n", 4},
			{body, 1}, {"RSET\r\nNOOP\r\nQUIT\r\n", 3}}},
		{"long command", cmds("EHLO c.example", "NOOP "+strings.Repeat("x", 3000), "MAIL FROM:<"+strings.Repeat("x", 3000)+"@example.com>", "NOOP")},
		{"unauth client", cmds("XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.7", "EHLO c.example", "MAIL FROM:<a@example.com>",
			"RCPT TO:<b@example.com>", "RCPT TO:<postmaster>", "RSET", "QUIT")},
		{"xclient", cmds("EHLO c.example", "XCLIENT", "XCLIENT FOO=bar", "XCLIENT ADDR=1.2.3", "XCLIENT NAME=-bad", "XCLIENT PORT=x",
			"XCLIENT PROTO=X", "MAIL FROM:<a@example.com>", "XCLIENT ADDR=192.0.2.1", "RSET", "XCLIENT NAME=h.example ADDR=IPV6:2001:db8::1 HELO=x.example PROTO=ESMTP",
			"MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")},
		{"xforward", cmds("EHLO c.example", "XFORWARD NAME=a.example", "QUIT")},
		{"starttls unavailable", cmds("EHLO c.example", "STARTTLS", "AUTH PLAIN", "QUIT")},
		{"bdat", append(cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"),
			step{"BDAT 10\r\nSubject: x", 1}, step{"BDAT 6 LAST\r\n\r\nhi\r\n", 1}, step{"BDAT x\r\n", 1}, step{"QUIT\r\n", 1})},
		{"bdat no rcpt", append(cmds("EHLO c.example"), step{"BDAT 4\r\nabcd", 1}, step{"MAIL FROM:<a@example.com>\r\n", 1}, step{"BDAT 4 LAST\r\nabcd", 1})},
		// A last chunk without a final line end: Postfix ends the
		// message with one and counts it.
		{"bdat no final newline", append(cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"),
			step{"BDAT 5 LAST\r\nhello", 1}, step{"MAIL FROM:<a@example.com>\r\n", 1}, step{"RCPT TO:<b@example.com>\r\n", 1},
			step{"BDAT 3\r\nab\r", 1}, step{"BDAT 0 LAST\r\n", 1})},
		{"bdat empty", append(cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"),
			step{"BDAT 0 LAST\r\n", 1}, step{"MAIL FROM:<a@example.com>\r\n", 1}, step{"RCPT TO:<b@example.com>\r\n", 1},
			step{"BDAT 4\r\nab\r\n", 1}, step{"BDAT 0 LAST\r\n", 1})},
	}
	compareDialogues(t, pf, ours, ds)
}

// smuggle is a DATA dialogue whose body holds a fake end of data followed
// by a second transaction; only the real CRLF.CRLF may end it.
func smuggle(name, fake string) dialogue {
	return dialogue{name, append(cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"),
		step{"Subject: x\r\n\r\nbody" + fake + "MAIL FROM:<evil@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: evil\r\n\r\n.\r\n", 1},
		step{"NOOP\r\n", 1})}
}

func TestBareNewlineAgainstPostfix(t *testing.T) {
	pf, ours, h, _ := startPair(t, oracleMain+"smtpd_forbid_bare_newline = normalize\nsmtpd_forbid_bare_newline_exclusions =\n")
	var ds []dialogue
	for _, e := range []struct{ name, fake string }{
		{"LF.LF", "\n.\n"}, {"CR.CRLF", "\r.\r\n"}, {"LF.CRLF", "\n.\r\n"}, {"CRLF.LF", "\r\n.\n"},
		{"CR.CR", "\r.\r"}, {"CRLF.CR", "\r\n.\r"},
	} {
		ds = append(ds, smuggle(e.name, e.fake))
	}
	ds = append(ds, dialogue{"bare LF command", []step{{"EHLO c.example\n", 1}, {"NOOP\r\n", 1}}})
	compareDialogues(t, pf, ours, ds)
	for _, m := range h.messages() {
		if !strings.Contains(m.buf.String(), "MAIL FROM:<evil@example.com>") {
			t.Errorf("message %s lost the smuggled text:\n%s", m.id, m.buf.String())
		}
	}
}

func TestBareNewlineRejectAgainstPostfix(t *testing.T) {
	pf, ours, _, _ := startPair(t, oracleMain+"smtpd_forbid_bare_newline = reject\nsmtpd_forbid_bare_newline_exclusions =\n")
	ds := []dialogue{smuggle("LF.LF", "\n.\n"), smuggle("CR.CRLF", "\r.\r\n"),
		{"bare LF command", []step{{"EHLO c.example\n", 1}, {"NOOP\r\n", 1}}}}
	compareDialogues(t, pf, ours, ds)
	pf, ours, _, _ = startPair(t, oracleMain+"smtpd_forbid_bare_newline = yes\nsmtpd_forbid_bare_newline_exclusions =\n")
	compareDialogues(t, pf, ours, ds)
}

func TestErrorLimitsAgainstPostfix(t *testing.T) {
	pf, ours, _, _ := startPair(t, oracleMain+"smtpd_hard_error_limit = 5\nsmtpd_soft_error_limit = 2\n")
	ds := []dialogue{{"hard limit", cmds("EHLO c.example", "FOO", "BAR", "NOOP", "MAIL FROM:", "RCPT TO:<a@example.com>", "RSET x", "NOOP", "NOOP")},
		{"reset by mail", append(cmds("EHLO c.example", "FOO", "BAR", "BAZ", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"),
			step{"\r\n.\r\n", 1}, step{"FOO\r\n", 1}, step{"FOO\r\n", 1}, step{"FOO\r\n", 1}, step{"FOO\r\n", 1}, step{"FOO\r\n", 1})},
	}
	compareDialogues(t, pf, ours, ds)
}

func TestNoDelayRejectAgainstPostfix(t *testing.T) {
	pf, ours, _, _ := startPair(t, oracleMain+`smtpd_delay_reject = no
smtpd_client_restrictions = check_client_access inline:{{192.0.2.66=REJECT go away}}
smtpd_helo_restrictions = check_helo_access inline:{{bad.example=REJECT bad helo}}
smtpd_sender_restrictions = check_sender_access inline:{{bad@example.com=REJECT bad sender}}
`)
	ds := []dialogue{
		{"client", cmds("XCLIENT ADDR=192.0.2.66", "EHLO c.example", "HELO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA", "NOOP", "RSET", "VRFY x", "FOO", "QUIT")},
		{"helo", cmds("XCLIENT ADDR=192.0.2.67", "EHLO bad.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "EHLO good.example", "MAIL FROM:<bad@example.com>", "MAIL FROM:<a@example.com>", "QUIT")},
	}
	compareDialogues(t, pf, ours, ds)
}

// smtpdLogRe picks the smtpd messages a user greps for.
var smtpdLogRe = regexp.MustCompile(`postfix/smtpd\[\d+\]: (.*)$`)

// interesting reports whether a log message is one this package must
// write exactly as Postfix does.
func interesting(m string) bool {
	for _, p := range []string{"connect from ", "disconnect from ", "reject: ", "client=", "improper command pipelining", "lost connection", "timeout after", "too many errors"} {
		if strings.Contains(m, p) {
			return true
		}
	}
	return false
}

var logIDRe = regexp.MustCompile(`^[0-9A-Z]{5,}:`)

func maskLog(m string) string {
	if strings.HasPrefix(m, "NOQUEUE:") {
		return m
	}
	return logIDRe.ReplaceAllString(m, "ID:")
}

func TestLogLinesAgainstPostfix(t *testing.T) {
	ds := []dialogue{
		{"session", append(cmds("XCLIENT ADDR=192.0.2.9", "EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>",
			"XCLIENT ADDR=127.0.0.1", "EHLO c.example", "FOO", "MAIL FROM:<a@example.com>", "RCPT TO:<blocked@example.com>", "RCPT TO:<b@example.com>", "DATA"),
			step{"\r\n.\r\n", 2}, step{"NOOP\r\nRSET\r\nQUIT\r\n", 3})},
		{"pipelining without EHLO", []step{{"HELO c.example\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", 2}, {"QUIT\r\n", 1}}},
		{"lost", cmds("EHLO c.example", "MAIL FROM:<a@example.com>")},
		{"delivered", append(cmds("EHLO c.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "RCPT TO:<c@example.com>", "DATA"),
			step{"x\r\n.\r\n", 1}, step{"QUIT\r\n", 1})},
	}
	compareLogs(t, oracleMain, ds)
}

func TestNoDelayRejectLogsAgainstPostfix(t *testing.T) {
	compareLogs(t, oracleMain+`smtpd_delay_reject = no
smtpd_client_restrictions = check_client_access inline:{{192.0.2.66=REJECT go away}}
smtpd_helo_restrictions = check_helo_access inline:{{bad.example=REJECT bad helo}}
smtpd_sender_restrictions = check_sender_access inline:{{bad@example.com=REJECT bad sender}}
`, []dialogue{
		{"client", cmds("XCLIENT ADDR=192.0.2.66", "EHLO c.example", "MAIL FROM:<a@example.com>", "QUIT")},
		{"helo", cmds("XCLIENT ADDR=192.0.2.67", "EHLO bad.example", "EHLO good.example", "MAIL FROM:<bad@example.com>", "QUIT")},
	})
}

// compareLogs runs each dialogue against Postfix and this server, both
// with main, and compares the log lines of interest.
func compareLogs(t *testing.T, main string, ds []dialogue) {
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
	c, err := config.Parse("main.cf", strings.NewReader(p.MainCF()))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFrom(context.Background(), c, RoleSMTP, restrictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ours, _, logs := startServer(t, cfg)
	for _, d := range ds {
		before := len(strings.Split(p.Log(), "\n"))
		d.run(t, p.Addr)
		var want []string
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			want = want[:0]
			lines := strings.Split(p.Log(), "\n")
			for _, l := range lines[min(before-1, len(lines)):] {
				if m := smtpdLogRe.FindStringSubmatch(l); m != nil && interesting(m[1]) {
					want = append(want, maskLog(m[1]))
				}
			}
			for len(want) > 0 && !strings.HasPrefix(want[0], "connect from") {
				want = want[1:]
			}
			// The harness's own readiness probe (connect, QUIT) can be
			// logged late, in front of the dialogue's session: skip it.
			for len(want) >= 3 && strings.HasPrefix(want[0], "connect from") &&
				strings.HasPrefix(want[1], "disconnect from") && strings.HasSuffix(want[1], " quit=1 commands=1") {
				want = want[2:]
			}
			if len(want) > 0 && strings.HasPrefix(want[len(want)-1], "disconnect from") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		n0 := len(logs.all())
		d.run(t, ours)
		var got []string
		deadline = time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			got = got[:0]
			for _, m := range logs.all()[n0:] {
				if interesting(m) {
					got = append(got, maskLog(m))
				}
			}
			if len(got) > 0 && strings.HasPrefix(got[len(got)-1], "disconnect from") {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("%s: log lines differ\n--- Postfix:\n%s\n--- postkit:\n%s", d.name, strings.Join(want, "\n"), strings.Join(got, "\n"))
		}
	}
}

func TestHeloRequiredAndDiscardAgainstPostfix(t *testing.T) {
	pf, ours, _, _ := startPair(t, oracleMain+"smtpd_helo_required = yes\nsmtpd_discard_ehlo_keywords = pipelining, dsn, chunking, silent-discard\ndisable_vrfy_command = yes\nsmtputf8_enable = no\n")
	ds := []dialogue{{"helo required", cmds("MAIL FROM:<a@example.com>", "ETRN example.com", "VRFY a", "EHLO c.example", "MAIL FROM:<a@example.com> SMTPUTF8", "MAIL FROM:<a@example.com> RET=FULL", "MAIL FROM:<a@example.com> ENVID=x",
		"MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> NOTIFY=NEVER", "RCPT TO:<b@example.com> ORCPT=rfc822;x")}}
	compareDialogues(t, pf, ours, ds)
}

func TestUnauthPipeliningAgainstPostfix(t *testing.T) {
	pf, ours, _, _ := startPair(t, oracleMain+"smtpd_data_restrictions = reject_unauth_pipelining\n")
	ds := []dialogue{
		{"helo pipelined", []step{{"HELO c.example\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 3}, {"QUIT\r\n", 1}}},
		{"ehlo pipelined", []step{{"EHLO c.example\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 3}, {"x\r\n.\r\n", 1}, {"QUIT\r\n", 1}}},
		{"data early", []step{{"EHLO c.example\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n", 3}, {"QUIT\r\n", 2}}},
		{"ehlo early", []step{{"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\n", 2}, {"RCPT TO:<b@example.com>\r\nDATA\r\n", 2}, {"QUIT\r\n", 1}}},
	}
	compareDialogues(t, pf, ours, ds)
}

// unauthPipeliningDialogues send commands ahead of their replies where
// RFC 2920 does not allow it (without PIPELINING, after EHLO, DATA or
// STARTTLS in the same packet) and where it does.
func unauthPipeliningDialogues() []dialogue {
	return []dialogue{
		{"helo pipelined", []step{{"HELO c.example\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 3}, {"QUIT\r\n", 1}}},
		{"ehlo pipelined", []step{{"EHLO c.example\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 3}, {"x\r\n.\r\n", 1}, {"QUIT\r\n", 1}}},
		{"data early", []step{{"EHLO c.example\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n", 3}, {"QUIT\r\n", 2}}},
		{"ehlo early", []step{{"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\n", 2}, {"RCPT TO:<b@example.com>\r\nDATA\r\n", 2}, {"QUIT\r\n", 1}}},
		{"noop early", []step{{"EHLO c.example\r\n", 1}, {"NOOP\r\nNOOP\r\n", 2}, {"QUIT\r\n", 1}}},
		{"rset quit", []step{{"EHLO c.example\r\n", 1}, {"RSET\r\nQUIT\r\n", 2}}},
		{"before helo", []step{{"NOOP\r\nHELO c.example\r\n", 2}, {"QUIT\r\n", 1}}},
		{"unknown early", []step{{"EHLO c.example\r\n", 1}, {"FOO\r\nNOOP\r\n", 2}, {"QUIT\r\n", 1}}},
		{"unknown without ehlo", []step{{"HELO c.example\r\n", 1}, {"FOO\r\nNOOP\r\n", 2}, {"QUIT\r\n", 1}}},
		{"rset without ehlo", []step{{"HELO c.example\r\n", 1}, {"RSET\r\nNOOP\r\n", 2}, {"QUIT\r\n", 1}}},
		{"starttls early", []step{{"EHLO c.example\r\n", 1}, {"STARTTLS\r\nNOOP\r\n", 2}, {"QUIT\r\n", 1}}},
		{"vrfy early", []step{{"EHLO c.example\r\n", 1}, {"VRFY a@example.com\r\nNOOP\r\n", 2}, {"QUIT\r\n", 1}}},
		{"quit early", []step{{"EHLO c.example\r\n", 1}, {"QUIT\r\nNOOP\r\n", 1}}},
		{"bdat", []step{{"EHLO c.example\r\n", 1}, {"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT 5 LAST\r\nhello", 3}, {"QUIT\r\n", 1}}},
	}
}

func TestForbidUnauthPipeliningAgainstPostfix(t *testing.T) {
	t.Parallel()
	main := oracleMain + "smtpd_forbid_unauth_pipelining = yes\n"
	pf, ours, _, _ := startPair(t, main)
	compareDialogues(t, pf, ours, unauthPipeliningDialogues())
	compareLogs(t, main, unauthPipeliningDialogues())

	// With TLS on, what follows STARTTLS in the same packet is thrown
	// away (CVE-2011-0411), not refused.
	dir, err := os.MkdirTemp("", "fup")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	_, crt, key := certFiles(t, dir, "srv", "mx.oracle.test")
	main += "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = " + crt + "\nsmtpd_tls_key_file = " + key + "\n"
	pf, ours, _, _ = startPair(t, main)
	tlsDialogues := []dialogue{{"starttls early with TLS", []step{{"EHLO c.example\r\n", 1}, {"STARTTLS\r\nNOOP\r\n", 1}}}}
	compareDialogues(t, pf, ours, tlsDialogues)
	compareLogs(t, main, tlsDialogues)
}

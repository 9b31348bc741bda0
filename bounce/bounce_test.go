package bounce

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/postkit-mail/postkit/config"
)

var testNow = time.Date(2026, 11, 28, 9, 30, 0, 0, time.UTC)

func testSettings() *Settings {
	s := Defaults("mx.example.com")
	s.Now = func() time.Time { return testNow }
	s.Location = time.UTC
	s.NewID = func() string { return "4Yxk3B5xWJzBq2" }
	return s
}

const testContent = "Received: from c.example (c.example [192.0.2.1])\n\tby mx.example.com (Postfix) with ESMTP id 3F1A2B4C5D\n" +
	"From: Alice <alice@example.org>\nSubject: hello\n\nthe body\n"

func testMessage(rcpts ...Recipient) *Message {
	return &Message{
		QueueID: "3F1A2B4C5D", Arrival: testNow.Add(-time.Hour), Sender: "alice@example.org",
		Recipients: rcpts, Content: strings.NewReader(testContent), Size: int64(len(testContent)),
	}
}

func failed(addr string) Recipient {
	return Recipient{Address: addr, Action: Failed, Status: "5.1.1", RemoteMTA: "mx.example.net",
		DiagnosticCode: "smtp; 550 5.1.1 user unknown",
		Reason:         "host mx.example.net[192.0.2.9] said: 550 5.1.1 user unknown (in reply to RCPT TO command)"}
}

// part returns the MIME part n (1-based) of a notice as go-message reads
// it: its Content-Type and body.
func part(t *testing.T, data []byte, n int) (string, string) {
	t.Helper()
	e, err := message.Read(bytes.NewReader(data))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("go-message: %v", err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("not multipart:\n%s", data)
	}
	for i := 1; ; i++ {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v\n%s", n, err, data)
		}
		if i == n {
			ct, _, _ := p.Header.ContentType()
			b, err := io.ReadAll(p.Body)
			if err != nil {
				t.Fatal(err)
			}
			return ct, string(b)
		}
	}
}

func header(data []byte, name string) string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	for l := range strings.SplitSeq(string(head), "\r\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	return ""
}

func TestNoticeRouting(t *testing.T) {
	type want struct {
		class, sender, rcpt string
		finals              []string // Final-Recipient addresses
		third               string   // content type of the returned message
	}
	never := failed("never@example.net")
	never.Notify = NotifyNever
	successOnly := Recipient{Address: "s@example.net", Action: Relayed, Status: "2.0.0", Notify: NotifySuccess, Reason: "delivered"}
	plainOK := Recipient{Address: "p@example.net", Action: Delivered, Status: "2.0.0", Reason: "delivered"}
	delayed := Recipient{Address: "d@example.net", Action: Delayed, Status: "4.4.1", Reason: "connection timed out"}
	delayNoNotify := delayed
	delayNoNotify.Address, delayNoNotify.Notify = "dn@example.net", NotifyFailure
	for _, tc := range []struct {
		name    string
		kind    Kind
		sender  string
		ret     Ret
		size    int64 // bounce_size_limit, 0 for the default
		classes []string
		rcpts   []Recipient
		want    []want
	}{
		{name: "failure to the sender", kind: Failure, sender: "alice@example.org",
			rcpts: []Recipient{failed("b@example.net"), failed("a@example.net"), plainOK},
			want:  []want{{"sender", "", "alice@example.org", []string{"a@example.net", "b@example.net"}, "message/rfc822"}}},
		{name: "RET=HDRS", kind: Failure, sender: "alice@example.org", ret: RetHdrs,
			rcpts: []Recipient{failed("a@example.net")},
			want:  []want{{"sender", "", "alice@example.org", []string{"a@example.net"}, "text/rfc822-headers"}}},
		{name: "larger than bounce_size_limit", kind: Failure, sender: "alice@example.org", ret: RetFull, size: 10,
			rcpts: []Recipient{failed("a@example.net")},
			want:  []want{{"sender", "", "alice@example.org", []string{"a@example.net"}, "text/rfc822-headers"}}},
		{name: "postmaster copy", kind: Failure, sender: "alice@example.org", classes: []string{"bounce"},
			rcpts: []Recipient{failed("a@example.net"), never},
			want: []want{
				{"sender", "", "alice@example.org", []string{"a@example.net"}, "message/rfc822"},
				{"bounce", "double-bounce@mx.example.com", "postmaster@mx.example.com", []string{"a@example.net", "never@example.net"}, "text/rfc822-headers"}}},
		{name: "NOTIFY=NEVER", kind: Failure, sender: "alice@example.org", rcpts: []Recipient{never}},
		{name: "null sender, no 2bounce", kind: Failure, sender: "", rcpts: []Recipient{failed("a@example.net")}},
		{name: "null sender, 2bounce", kind: Failure, sender: "", classes: []string{"2bounce", "bounce"},
			rcpts: []Recipient{failed("a@example.net")},
			want:  []want{{"2bounce", "double-bounce@mx.example.com", "postmaster@mx.example.com", []string{"a@example.net"}, "message/rfc822"}}},
		{name: "double-bounce sender", kind: Failure, sender: "double-bounce@mx.example.com", classes: []string{"2bounce", "bounce"},
			rcpts: []Recipient{failed("a@example.net")}},
		{name: "null sender delay", kind: Delay, sender: "", classes: []string{"delay"}, rcpts: []Recipient{delayed}},
		{name: "delay", kind: Delay, sender: "alice@example.org", classes: []string{"delay"}, ret: RetFull,
			rcpts: []Recipient{delayed, delayNoNotify, failed("a@example.net")},
			want: []want{
				{"sender", "", "alice@example.org", []string{"d@example.net"}, "text/rfc822-headers"},
				{"delay", "double-bounce@mx.example.com", "postmaster@mx.example.com", []string{"d@example.net", "dn@example.net"}, "text/rfc822-headers"}}},
		{name: "success only with NOTIFY=SUCCESS", kind: Success, sender: "alice@example.org", ret: RetFull,
			classes: []string{"bounce", "delay", "2bounce"},
			rcpts:   []Recipient{successOnly, plainOK, failed("a@example.net")},
			want:    []want{{"sender", "", "alice@example.org", []string{"s@example.net"}, "text/rfc822-headers"}}},
		{name: "success to the null sender", kind: Success, sender: "", rcpts: []Recipient{successOnly}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings()
			s.NotifyClasses = tc.classes
			if tc.size != 0 {
				s.BounceSizeLimit = tc.size
			}
			m := testMessage(tc.rcpts...)
			m.Sender, m.Ret = tc.sender, tc.ret
			got, err := s.Notices(tc.kind, m)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d notices, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				n := got[i]
				if n.Class != w.class || n.Sender != w.sender || n.Recipient != w.rcpt {
					t.Errorf("notice %d: class %q from <%s> to <%s>, want %q from <%s> to <%s>",
						i, n.Class, n.Sender, n.Recipient, w.class, w.sender, w.rcpt)
				}
				if to := header(n.Data, "To"); to != w.rcpt {
					t.Errorf("notice %d: To: %q, want %q", i, to, w.rcpt)
				}
				_, ds := part(t, n.Data, 2)
				var finals []string
				for l := range strings.SplitSeq(ds, "\r\n") {
					if a, ok := strings.CutPrefix(l, "Final-Recipient: rfc822; "); ok {
						finals = append(finals, a)
					}
				}
				if !slices.Equal(finals, w.finals) {
					t.Errorf("notice %d: recipients %q, want %q", i, finals, w.finals)
				}
				if ct, body := part(t, n.Data, 3); ct != w.third {
					t.Errorf("notice %d: returned message as %s, want %s", i, ct, w.third)
				} else if !strings.HasPrefix(body, "Return-Path: <") || !strings.Contains(body, "Subject: hello\r\n") {
					t.Errorf("notice %d: returned message:\n%s", i, body)
				}
				auto := "auto-replied"
				if w.class != "sender" {
					auto = "auto-generated"
				}
				if got := header(n.Data, "Auto-Submitted"); got != auto {
					t.Errorf("notice %d: Auto-Submitted: %q, want %q", i, got, auto)
				}
			}
		})
	}
}

// TestNoticeFields checks the delivery-status fields and headers of one
// notice with every optional input set.
func TestNoticeFields(t *testing.T) {
	s := testSettings()
	s.ReceivedFromMTA = true
	r1 := failed("joe@example.net")
	r1.Original, r1.ORCPT = "info@example.org", "rfc822;info@example.org"
	r2 := Recipient{Address: "x@example.net", Action: Delayed, Status: "4.4.1", Reason: "connect to x: timed out"}
	m := testMessage(r1, r2)
	m.ENVID = "QQ314159"
	m.Client = Client{Name: "c.example", Addr: "192.0.2.1", HELO: "c.example", Protocol: "ESMTP"}
	ns, err := s.Notices(Failure, m)
	if err != nil || len(ns) != 1 {
		t.Fatal(ns, err)
	}
	n := ns[0].Data
	if ns[0].Encoding != Encoding8Bit || ns[0].SMTPUTF8 {
		t.Errorf("notice to queue with encoding %d, SMTPUTF8 %v; want 8-bit, no SMTPUTF8", ns[0].Encoding, ns[0].SMTPUTF8)
	}
	for _, h := range []struct{ name, want string }{
		{"Received", "by mx.example.com (Postfix)"},
		{"Date", "Sat, 28 Nov 2026 09:30:00 +0000 (UTC)"},
		{"From", "Mail Delivery System <MAILER-DAEMON@mx.example.com>"},
		{"Subject", "Undelivered Mail Returned to Sender"},
		{"Message-Id", "<20261128093000.4Yxk3B5xWJzBq2@mx.example.com>"},
		{"Content-Type", "multipart/report; report-type=delivery-status;"},
	} {
		if got := header(n, h.name); got != h.want {
			t.Errorf("%s: %q, want %q", h.name, got, h.want)
		}
	}
	if !bytes.Contains(n, []byte("\tboundary=\"3F1A2B4C5D.1795858200/mx.example.com\"\r\n")) {
		t.Errorf("boundary is not QUEUEID.TIME/myhostname:\n%s", n)
	}
	_, text := part(t, n, 1)
	if !strings.Contains(text, "\r\n<joe@example.net> (expanded from <info@example.org>): host\r\n    mx.example.net[192.0.2.9] said: 550 5.1.1 user unknown (in reply to RCPT TO\r\n    command)\r\n") {
		t.Errorf("text part:\n%s", text)
	}
	_, ds := part(t, n, 2)
	want := "Reporting-MTA: dns; mx.example.com\r\n" +
		"Original-Envelope-Id: QQ314159\r\n" +
		"X-Postfix-Queue-ID: 3F1A2B4C5D\r\n" +
		"X-Postfix-Sender: rfc822; alice@example.org\r\n" +
		"Received-From-MTA: dns; c.example (c.example [192.0.2.1])\r\n" +
		"Arrival-Date: Sat, 28 Nov 2026 08:30:00 +0000 (UTC)\r\n" +
		"\r\n" +
		"Final-Recipient: rfc822; joe@example.net\r\n" +
		"Original-Recipient: rfc822;info@example.org\r\n" +
		"Action: failed\r\n" +
		"Status: 5.1.1\r\n" +
		"Remote-MTA: dns; mx.example.net\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
	if ds != want {
		t.Errorf("delivery-status:\n%s\nwant\n%s", ds, want)
	}

	// The delayed recipient's warning: Will-Retry-Until and the
	// X-Postfix diagnostic type for a reason without an SMTP reply.
	ns, err = s.Notices(Delay, m)
	if err != nil || len(ns) != 1 {
		t.Fatal(ns, err)
	}
	_, ds = part(t, ns[0].Data, 2)
	if !strings.HasSuffix(ds, "\r\nFinal-Recipient: rfc822; x@example.net\r\nOriginal-Recipient: rfc822;x@example.net\r\n"+
		"Action: delayed\r\nStatus: 4.4.1\r\nDiagnostic-Code: X-Postfix; connect to x: timed out\r\n"+
		"Will-Retry-Until: Thu,  3 Dec 2026 08:30:00 +0000 (UTC)\r\n") {
		t.Errorf("delay delivery-status:\n%s", ds)
	}
	if got := header(ns[0].Data, "Subject"); got != "Delayed Mail (still being retried)" {
		t.Errorf("delay Subject: %q", got)
	}

	// Without NewID: no Received: header and a random Message-Id.
	s.NewID = nil
	ns, _ = s.Notices(Failure, m)
	if header(ns[0].Data, "Received") != "" || !strings.HasPrefix(header(ns[0].Data, "Message-Id"), "<20261128093000.") {
		t.Errorf("without NewID:\n%s", ns[0].Data)
	}
}

// TestOriginal: the returned message with LF or CRLF lines, without a
// final newline, without a body, with a line longer than the buffer, and
// with a line equal to the boundary.
func TestOriginal(t *testing.T) {
	long := strings.Repeat("x", 70000)
	for _, tc := range []struct {
		name, content, full, hdrs string
	}{
		{"LF", "A: 1\nB: 2\n\nbody\n", "A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n"},
		{"CRLF", "A: 1\r\n\r\nbody\r\n", "A: 1\r\n\r\nbody\r\n", "A: 1\r\n"},
		{"no final newline", "A: 1\n\nbody", "A: 1\r\n\r\nbody\r\n", "A: 1\r\n"},
		{"headers only", "A: 1\nB: 2", "A: 1\r\nB: 2\r\n", "A: 1\r\nB: 2\r\n"},
		{"long line", "A: 1\n\n" + long + "\nend\n", "A: 1\r\n\r\n" + long + "\r\nend\r\n", "A: 1\r\n"},
		{"boundary inside", "A: 1\n\n--3F1A2B4C5D.1795858200/mx.example.com--\nafter\n",
			"A: 1\r\n\r\n--3F1A2B4C5D.1795858200/mx.example.com--\r\nafter\r\n", "A: 1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ret := range []Ret{RetFull, RetHdrs} {
				s := testSettings()
				s.BounceSizeLimit = 1 << 20
				m := testMessage(failed("a@example.net"))
				m.Content, m.Size, m.Ret = strings.NewReader(tc.content), int64(len(tc.content)), ret
				ns, err := s.Notices(Failure, m)
				if err != nil {
					t.Fatal(err)
				}
				_, body := part(t, ns[0].Data, 3)
				want := "Return-Path: <alice@example.org>\r\n" + tc.full
				if ret == RetHdrs {
					want = "Return-Path: <alice@example.org>\r\n" + tc.hdrs
				}
				if body != want {
					t.Errorf("RET %d: returned\n%q\nwant\n%q", ret, trunc(body), trunc(want))
				}
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:150] + "..." + s[len(s)-150:]
	}
	return s
}

func TestParseNotify(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Notify
		ok   bool
	}{
		{"NEVER", NotifyNever, true},
		{"success,FAILURE", NotifySuccess | NotifyFailure, true},
		{"DELAY", NotifyDelay, true},
		{"NEVER,DELAY", 0, false},
		{"SOMETIMES", 0, false},
		{"", 0, false},
	} {
		got, err := ParseNotify(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseNotify(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"short", "short\r\n"},
		{strings.Repeat("a ", 39) + "b", strings.Repeat("a ", 39) + "b\r\n"}, // 79 columns fit
		{strings.Repeat("a ", 39) + "bc", strings.TrimSuffix(strings.Repeat("a ", 39), " ") + "\r\n    bc\r\n"},
		{strings.Repeat("x", 100) + " y", strings.Repeat("x", 100) + "\r\n    y\r\n"},
		{"a\r\nb", "a  b\r\n"},
	} {
		var b bytes.Buffer
		wrap(&b, tc.in)
		if b.String() != tc.want {
			t.Errorf("wrap(%q) =\n%q\nwant\n%q", tc.in, b.String(), tc.want)
		}
	}
}

func TestQuote8(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"joe@example.org", "joe@example.org"},
		{"a b@example.org", `"a b"@example.org`},
		{"d\xc3\xb6rte@example.org", "\"d\\\xc3\\\xb6rte\"@example.org"},
		{`a"b@x`, `"a\"b"@x`},
	} {
		if got := quote8(tc.in); got != tc.want {
			t.Errorf("quote8(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The template test: a bounce_template_file written here with the
// variables bounce(5) documents, read through main.cf by FromConfig.
func TestTemplateFile(t *testing.T) {
	dir := t.TempDir()
	tmpl := `# comments and blank lines outside templates are ignored

failure_template = <<EOF
Charset: utf-8
from: Postmaster of Example <postmaster>
SUBJECT: Nicht zustellbar
Postmaster-Subject: Kopie: nicht zustellbar

Das Mailsystem $myhostname ($mydomain, $mail_name, $myorigin) meldet:
Frist: $maximal_queue_lifetime_weeks w = $maximal_queue_lifetime_days d = $maximal_queue_lifetime_hours h
 = $maximal_queue_lifetime_minutes min = ${maximal_queue_lifetime_seconds} s.
Warnung nach $(delay_warning_time_hours) h / $delay_warning_time_minutes min; Grenze $bounce_size_limit Bytes.
Ein Dollar: $$1. Eigener Parameter: $my_own_text. Umlaut: ä.
EOF

delay_template = <<STOP
Subject: Still trying

Retried for $maximal_queue_lifetime_days days.
STOP
`
	path := filepath.Join(dir, "bounce.cf")
	if err := os.WriteFile(path, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	mainCF := "myhostname = mail.example.com\nmyorigin = example.com\nmaximal_queue_lifetime = 14d\n" +
		"delay_warning_time = 4h\nbounce_size_limit = 1234\nmy_own_text = hello\nbounce_template_file = " + path + "\n"
	cfg, err := config.Parse("main.cf", strings.NewReader(mainCF))
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return testNow }
	ns, err := s.Notices(Failure, testMessage(failed("a@example.net")))
	if err != nil || len(ns) != 1 {
		t.Fatal(ns, err)
	}
	n := ns[0].Data
	if got := header(n, "From"); got != "Postmaster of Example <postmaster@example.com>" {
		t.Errorf("From: %q", got)
	}
	if got := header(n, "Subject"); got != "Nicht zustellbar" {
		t.Errorf("Subject: %q", got)
	}
	ct, text := part(t, n, 1)
	if ct != "text/plain" || !bytes.Contains(n, []byte("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")) {
		t.Errorf("text part type %s:\n%s", ct, n)
	}
	want := "Das Mailsystem mail.example.com (example.com, Postfix, example.com) meldet:\r\n" +
		"Frist: 2 w = 14 d = 336 h\r\n = 20160 min = 1209600 s.\r\n" +
		"Warnung nach 4 h / 240 min; Grenze 1234 Bytes.\r\n" +
		"Ein Dollar: $1. Eigener Parameter: hello. Umlaut: ä.\r\n" +
		"\r\n<a@example.net>: "
	if !strings.HasPrefix(text, want) {
		t.Errorf("text:\n%s\nwant prefix\n%s", text, want)
	}

	// Postmaster copies take Postmaster-Subject and no template text.
	s.NotifyClasses = []string{"bounce"}
	ns, _ = s.Notices(Failure, testMessage(failed("a@example.net")))
	if got := header(ns[1].Data, "Subject"); got != "Kopie: nicht zustellbar" {
		t.Errorf("postmaster Subject: %q", got)
	}
	if _, text := part(t, ns[1].Data, 1); !strings.HasPrefix(text, "\r\n<a@example.net>: ") {
		t.Errorf("postmaster text:\n%s", text)
	}

	// The delay template keeps the built-in From.
	ns, _ = s.Notices(Delay, testMessage(Recipient{Address: "d@example.net", Action: Delayed, Reason: "later"}))
	if got := header(ns[0].Data, "From"); got != "Mail Delivery System <MAILER-DAEMON@example.com>" {
		t.Errorf("delay From: %q", got)
	}
	if _, text := part(t, ns[0].Data, 1); !strings.HasPrefix(text, "Retried for 14 days.\r\n") {
		t.Errorf("delay text:\n%s", text)
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"no heredoc", "failure_template = text\n", "line 1: expected"},
		{"unknown template", "bogus_template = <<EOF\nx\nEOF\n", `line 1: unknown template name "bogus_template"`},
		{"unterminated", "\nfailure_template = <<EOF\nSubject: x\n", `line 2: failure_template: no "EOF" line ends it`},
		{"unknown header", "delay_template = <<EOF\nX-Bogus: y\n\ntext\nEOF\n", `unknown header "X-Bogus"`},
		{"8-bit text with us-ascii", "failure_template = <<EOF\nCharset: us-ascii\n\n\xc3\xa4\nEOF\n", "not ASCII"},
		{"twice", "success_template = <<E\nE\nsuccess_template = <<E\nE\n", "line 3: second success_template"},
		{"bad expansion", "failure_template = <<EOF\n${oops\nEOF\n", "failure_template"},
		{"quoted marker", "failure_template = <<'EOF'\nx\n'EOF'\n", "bad end marker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTemplates("bounce.cf", strings.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bounce.cf") {
				t.Errorf("error %v, want one naming the file and %q", err, tc.want)
			}
		})
	}
	if _, err := LoadTemplates(filepath.Join(t.TempDir(), "missing.cf")); err == nil {
		t.Error("a missing template file gave no error")
	}
}

func TestBadInput(t *testing.T) {
	s := testSettings()
	m := testMessage(failed("a@example.net"))
	m.Content = nil
	if _, err := s.Notices(Failure, m); err == nil {
		t.Error("no error for Size without Content")
	}
	s.Hostname = ""
	if _, err := s.Notices(Failure, testMessage(failed("a@example.net"))); err == nil {
		t.Error("no error without myhostname")
	}
	// Line breaks in values cannot add fields or break the structure.
	s = testSettings()
	r := failed("a@example.net")
	r.Reason = "bad\r\nX-Injected: yes"
	r.DiagnosticCode = "smtp; 550\nAction: delivered"
	m = testMessage(r)
	m.ENVID = "e\r\nX-Other: 1"
	ns, err := s.Notices(Failure, m)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ns[0].Data, []byte("\nX-Injected")) || bytes.Contains(ns[0].Data, []byte("\nAction: delivered")) ||
		bytes.Contains(ns[0].Data, []byte("\nX-Other")) {
		t.Errorf("a value broke a line:\n%s", ns[0].Data)
	}
}

// FromConfig on a main.cf that sets nothing about bounces gives Postfix's
// defaults, with the units main.cf implies (maximal_queue_lifetime in
// days, delay_warning_time in hours).
func TestFromConfigDefaults(t *testing.T) {
	cfg, err := config.Parse("main.cf", strings.NewReader("compatibility_level = 3.6\nmyhostname = mx.example.com\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults("mx.example.com")
	if got.Hostname != want.Hostname || got.origin() != "mx.example.com" || got.MailName != want.MailName ||
		got.DoubleBounceSender != want.DoubleBounceSender || !slices.Equal(got.NotifyClasses, want.NotifyClasses) ||
		got.BounceNoticeRecipient != want.BounceNoticeRecipient || got.TwoBounceNoticeRecipient != want.TwoBounceNoticeRecipient ||
		got.DelayNoticeRecipient != want.DelayNoticeRecipient || got.ErrorNoticeRecipient != want.ErrorNoticeRecipient ||
		got.BounceSizeLimit != want.BounceSizeLimit || got.MaximalQueueLifetime != want.MaximalQueueLifetime ||
		got.DelayWarningTime != 0 || got.SMTPUTF8Enable != want.SMTPUTF8Enable || got.Templates != nil {
		t.Errorf("FromConfig defaults:\n%+v\nwant\n%+v", got, want)
	}

	cfg.Set("maximal_queue_lifetime", "2")
	cfg.Set("delay_warning_time", "3")
	cfg.Set("notify_classes", "bounce,2bounce delay")
	got, err = FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.MaximalQueueLifetime != 48*time.Hour || got.DelayWarningTime != 3*time.Hour ||
		!slices.Equal(got.NotifyClasses, []string{"bounce", "2bounce", "delay"}) {
		t.Errorf("units or list: %v %v %q", got.MaximalQueueLifetime, got.DelayWarningTime, got.NotifyClasses)
	}
	cfg.Set("bounce_size_limit", "lots")
	if _, err := FromConfig(cfg); err == nil || !strings.Contains(err.Error(), "bounce_size_limit") {
		t.Errorf("bad bounce_size_limit: %v", err)
	}
}

package oracle

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPostfixBannerAndXCLIENT starts an instance and checks what a client
// sees: the greeting, XCLIENT changing the client, a rejection with the
// posed client in the reply, and the reject line in the log.
func TestPostfixBannerAndXCLIENT(t *testing.T) {
	t.Parallel()
	p := StartPostfix(t, PostfixOptions{Main: "" +
		"smtpd_client_restrictions = check_client_access cidr:$config_directory/clients\n",
		Files: []File{{Name: "clients", Data: "192.0.2.0/24 REJECT go away\n"}},
	})
	t.Logf("start took %v", p.StartTime)

	c := p.Session(t)
	if got := c.Banner().String(); got != "220 mx.oracle.test ESMTP Postfix" {
		t.Errorf("banner = %q", got)
	}
	ehlo := c.Cmd("EHLO client.example")
	if ehlo.Code != 250 || !slices.ContainsFunc(ehlo.Lines, func(l string) bool { return strings.HasPrefix(l, "XCLIENT ") }) {
		t.Errorf("EHLO from 127.0.0.1 does not offer XCLIENT:\n%s", ehlo)
	}
	x := c.Cmd("XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.7")
	if x.String() != "220 mx.oracle.test ESMTP Postfix" {
		t.Errorf("XCLIENT reply = %q, want a new greeting", x)
	}
	c.Cmd("EHLO client.example")
	if r := c.Cmd("MAIL FROM:<a@example.com>"); r.String() != "250 2.1.0 Ok" {
		t.Errorf("MAIL reply = %q", r)
	}
	r := c.Cmd("RCPT TO:<b@example.com>")
	want := "554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: go away"
	if r.String() != want {
		t.Errorf("RCPT reply = %q, want %q", r, want)
	}
	wantLog := "NOQUEUE: reject: RCPT from unknown[192.0.2.7]: " + want +
		"; from=<a@example.com> to=<b@example.com> proto=ESMTP helo=<client.example>"
	if !slices.Contains(r.Log, wantLog) {
		t.Errorf("RCPT log = %q, want %q", r.Log, wantLog)
	}
	if c.PID() == 0 {
		t.Errorf("the session's smtpd was not found")
	}
	c.Close()
	if !strings.Contains(p.Log(), wantLog) {
		t.Errorf("maillog lacks %q:\n%s", wantLog, p.Log())
	}
}

// TestPostfixReconfigure checks that after Reconfigure a new session gets
// the new reply, both for main.cf and for a table rebuilt with postmap.
func TestPostfixReconfigure(t *testing.T) {
	t.Parallel()
	main := "relay_domains = example.com\nsmtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt\n"
	p := StartPostfix(t, PostfixOptions{Main: main,
		Files: []File{{Name: "rcpt", Data: "b@example.com REJECT first\n", Postmap: "hash"}},
	})
	rcpt := func() string {
		c := p.Session(t)
		defer c.Close()
		c.Cmd("XCLIENT ADDR=192.0.2.7 NAME=client.example")
		c.Cmd("HELO client.example")
		c.Cmd("MAIL FROM:<a@example.com>")
		return c.Cmd("RCPT TO:<b@example.com>").String()
	}
	if got, want := rcpt(), "554 5.7.1 <b@example.com>: Recipient address rejected: first"; got != want {
		t.Fatalf("before reload: %q, want %q", got, want)
	}
	p.Reconfigure(t, main+"access_map_reject_code = 550\n",
		[]File{{Name: "rcpt", Data: "b@example.com REJECT second\n", Postmap: "hash"}})
	if got, want := rcpt(), "550 5.7.1 <b@example.com>: Recipient address rejected: second"; got != want {
		t.Fatalf("after reload: %q, want %q", got, want)
	}
}

// TestPostfixStartFailure checks that a configuration smtpd refuses (no
// reject_unauth_destination-like restriction) fails with Postfix's reason.
func TestPostfixStartFailure(t *testing.T) {
	t.Parallel()
	_, err := TryStartPostfix(t, PostfixOptions{Main: "smtpd_relay_restrictions = permit\nsmtpd_recipient_restrictions = permit\n"})
	if err == nil || !strings.Contains(err.Error(), "specify at least one working instance") {
		t.Errorf("start with a relay-open config: %v", err)
	}
}

// TestRunDialogue runs a small scenario: pipelined commands, the message
// after DATA (its "." is a step of its own), the log lines of a step, and
// the steps after a 421 that closed the connection.
func TestRunDialogue(t *testing.T) {
	t.Parallel()
	sc, err := ParseScenario("inline.txt", []byte(`
@@ main.cf
relay_domains = example.com
smtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt
smtpd_end_of_data_restrictions = check_sender_access inline:{{late@example.net = REJECT too late}}
@@ file rcpt hash
warn@example.com   WARN noted
bye@example.com    421 closing
@@ dialogue d
XCLIENT NAME=mail.example.net ADDR=192.0.2.7
EHLO mail.example.net
MAIL FROM:<a@example.net>
+ RCPT TO:<warn@example.com>
+ DATA
RSET
MAIL FROM:<late@example.net>
RCPT TO:<x@example.com>
DATA
RCPT TO:<bye@example.com>
RCPT TO:<x@example.com>
`))
	if err != nil {
		t.Fatal(err)
	}
	p := StartPostfix(t, sc.Options())
	tr := p.RunDialogue(t, sc.Dialogues[0])
	var got []string
	for _, st := range tr.Steps {
		r := st.Reply.String()
		if strings.HasPrefix(r, "250-") {
			r = "250-..."
		}
		if q, ok := strings.CutPrefix(r, "250 2.0.0 Ok: queued as "); ok && q != "" {
			r = "250 2.0.0 Ok: queued as QUEUEID"
		}
		got = append(got, st.Cmd.Text+" => "+r)
	}
	want := []string{
		"XCLIENT NAME=mail.example.net ADDR=192.0.2.7 => 220 mx.oracle.test ESMTP Postfix",
		"EHLO mail.example.net => 250-...",
		"MAIL FROM:<a@example.net> => 250 2.1.0 Ok",
		"RCPT TO:<warn@example.com> => 250 2.1.5 Ok",
		"DATA => 354 End data with <CR><LF>.<CR><LF>",
		". => 250 2.0.0 Ok: queued as QUEUEID",
		"RSET => 250 2.0.0 Ok",
		"MAIL FROM:<late@example.net> => 250 2.1.0 Ok",
		"RCPT TO:<x@example.com> => 250 2.1.5 Ok",
		"DATA => 354 End data with <CR><LF>.<CR><LF>",
		". => 554 5.7.1 <late@example.net>: Sender address rejected: too late",
		"RCPT TO:<bye@example.com> => 421 4.7.1 <bye@example.com>: Recipient address rejected: closing",
		"RCPT TO:<x@example.com> => (connection closed)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The WARN of the pipelined RCPT is logged with the group's last reply.
	if dataLog := tr.Steps[4].Reply.Log; !slices.ContainsFunc(dataLog, func(l string) bool {
		return strings.Contains(l, "warn: RCPT from mail.example.net[192.0.2.7]: noted;")
	}) {
		t.Errorf("log of the pipelined group = %q", dataLog)
	}
	if !tr.Steps[11].Reply.Closed || !tr.Steps[12].Reply.Closed {
		t.Errorf("421 did not close the session")
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "250 ok\r\n", want: "250 ok"},
		{in: "250-a\r\n250-b\r\n250 c\r\n", want: "250-a\n250-b\n250 c"},
		{in: "354\r\n", want: "354"},
		{in: "250-a\r\n251 b\r\n", bad: true},
		{in: "25 x\r\n", bad: true},
		{in: "250xok\r\n", bad: true},
		{in: "250-a\r\n", bad: true},
	} {
		r, err := ReadReply(bufio.NewReader(strings.NewReader(tc.in)))
		if tc.bad {
			if err == nil {
				t.Errorf("ReadReply(%q) = %q, want an error", tc.in, r)
			}
			continue
		}
		if err != nil || r.String() != tc.want {
			t.Errorf("ReadReply(%q) = %q, %v; want %q", tc.in, r, err, tc.want)
		}
	}
}

func TestParseScenario(t *testing.T) {
	src := `# preamble comment
@@ main.cf
smtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt,
    reject_unauth_destination
# a main.cf comment

@@ file rcpt hash
a@example.com REJECT

@@ file sub/clients.cidr
192.0.2.0/24 OK
@@ dialogue one
# comment
XCLIENT ADDR=192.0.2.1
EHLO x
MAIL FROM:<>
+ RCPT TO:<a@example.com>
DATA
@@ dialogue two
ETRN example.com
`
	s, err := ParseScenario("dir/name.txt", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "name" {
		t.Errorf("name = %q", s.Name)
	}
	wantMain := "smtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt,\n    reject_unauth_destination\n# a main.cf comment\n"
	if s.Main != wantMain {
		t.Errorf("main = %q, want %q", s.Main, wantMain)
	}
	wantFiles := []File{{Name: "rcpt", Data: "a@example.com REJECT\n", Postmap: "hash"}, {Name: "sub/clients.cidr", Data: "192.0.2.0/24 OK\n"}}
	if !slices.Equal(s.Files, wantFiles) {
		t.Errorf("files = %+v, want %+v", s.Files, wantFiles)
	}
	if len(s.Dialogues) != 2 {
		t.Fatalf("dialogues = %+v", s.Dialogues)
	}
	d := s.Dialogues[0]
	var cmds []string
	for _, c := range d.Commands {
		p := ""
		if c.Pipelined {
			p = "+"
		}
		cmds = append(cmds, p+c.Text)
	}
	if want := []string{"XCLIENT ADDR=192.0.2.1", "EHLO x", "MAIL FROM:<>", "+RCPT TO:<a@example.com>", "DATA"}; !slices.Equal(cmds, want) {
		t.Errorf("commands = %q, want %q", cmds, want)
	}
	if d.Name != "one" || d.Line != 12 || d.Commands[0].Line != 14 {
		t.Errorf("dialogue one: name %q line %d, first command line %d", d.Name, d.Line, d.Commands[0].Line)
	}

	for _, bad := range []string{
		"",
		"junk\n@@ dialogue a\nQUIT\n",
		"@@ dialogue a\n",
		"@@ file x\n",
		"@@ dialogue a\nQUIT\n@@ dialogue a\nQUIT\n",
		"@@ file ../x\n@@ dialogue a\nQUIT\n",
		"@@ file x nosuchtype\n@@ dialogue a\nQUIT\n",
		"@@ main.cf\n@@ main.cf\n@@ dialogue a\nQUIT\n",
		"@@ dialogue a\n+ QUIT\n",
		"@@ nonsense\n",
	} {
		if _, err := ParseScenario("bad.txt", []byte(bad)); err == nil {
			t.Errorf("ParseScenario(%q) succeeded", bad)
		}
	}
}

// TestScenarioCorpus parses the restriction scenario corpus: every file
// must load, so that restrictions' oracle test runs all of it.
func TestScenarioCorpus(t *testing.T) {
	dir := filepath.Join("..", "..", "restrictions", "testdata", "oracle")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("corpus: %v", err)
	}
	scs, err := LoadScenarios(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range scs {
		n += len(s.Dialogues)
	}
	t.Logf("%d scenario files, %d dialogues", len(scs), n)
}

func TestXCLIENTAttrs(t *testing.T) {
	a, ok := XCLIENTAttrs("xclient NAME=[UNAVAILABLE] addr=192.0.2.1 HELO=a+20b")
	if !ok || a["NAME"] != "[UNAVAILABLE]" || a["ADDR"] != "192.0.2.1" || a["HELO"] != "a b" {
		t.Errorf("XCLIENTAttrs = %v, %v", a, ok)
	}
	if _, ok := XCLIENTAttrs("EHLO x"); ok {
		t.Errorf("EHLO taken for XCLIENT")
	}
}

// BenchmarkPostfixStart measures StartPostfix: "postfix start" and the
// first greeting, then the stop.
func BenchmarkPostfixStart(b *testing.B) {
	for b.Loop() {
		p := StartPostfix(b, PostfixOptions{})
		if err := p.stop(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPostfixReconfigure measures a reload until the old daemons are
// gone, and BenchmarkPostfixDialogue one short dialogue with log capture.
func BenchmarkPostfixReconfigure(b *testing.B) {
	p := StartPostfix(b, PostfixOptions{})
	for i := 0; b.Loop(); i++ {
		p.Reconfigure(b, fmt.Sprintf("access_map_reject_code = %d\n", 550+i%2), nil)
	}
}

func BenchmarkPostfixDialogue(b *testing.B) {
	p := StartPostfix(b, PostfixOptions{Main: "relay_domains = example.com\n"})
	d := Dialogue{Name: "bench", Commands: []Command{
		{Text: "XCLIENT NAME=mail.example.net ADDR=192.0.2.7"}, {Text: "EHLO x.example"},
		{Text: "MAIL FROM:<a@example.net>"}, {Text: "RCPT TO:<b@example.com>"},
		{Text: "RCPT TO:<b@elsewhere.example>"},
	}}
	for b.Loop() {
		p.RunDialogue(b, d)
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add([]byte("@@ main.cf\na = b\n@@ file t hash\nk v\n@@ dialogue d\nEHLO x\n+ MAIL FROM:<>\n"))
	f.Add([]byte("# c\n@@ dialogue d\n\n# x\nQUIT\r\n"))
	f.Add([]byte("@@ file a/../../b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScenario("f.txt", data)
		if err != nil {
			return
		}
		if len(s.Dialogues) == 0 && !slices.ContainsFunc(strings.Split(string(data), "\n"), func(l string) bool {
			rest, ok := strings.CutPrefix(strings.TrimSuffix(l, "\r"), "@@")
			return ok && strings.TrimSpace(rest) == "main.cf"
		}) {
			t.Fatal("accepted a scenario without main.cf and dialogues")
		}
		for _, fl := range s.Files {
			if filepath.IsAbs(fl.Name) || strings.HasPrefix(fl.Name, "..") {
				t.Fatalf("file name %q escapes", fl.Name)
			}
		}
		for _, d := range s.Dialogues {
			for _, c := range d.Commands {
				if strings.ContainsAny(c.Text, "\r\n") || c.Text == "" {
					t.Fatalf("bad command %q", c.Text)
				}
			}
		}
	})
}

func FuzzReadReply(f *testing.F) {
	f.Add([]byte("250-a\r\n250 b\r\n"))
	f.Add([]byte("354\r\n"))
	f.Add([]byte("421-x\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadReply(bufio.NewReader(strings.NewReader(string(data))))
		if err != nil {
			return
		}
		if r.Code < 100 || r.Code > 599 || len(r.Lines) == 0 {
			t.Fatalf("accepted %q as %+v", data, r)
		}
	})
}

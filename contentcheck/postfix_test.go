package contentcheck

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// The tables of the private-Postfix test: every message is held (X-Hold),
// so that postcat shows what cleanup stored.
const oracleHeaderChecks = `/^X-Hold:/ HOLD keep it
/^Subject: replace-me/ REPLACE Subject: replaced
/^X-Ignore:/ IGNORE
/^X-Strip:/ STRIP stripped
/^X-Prepend:/ PREPEND X-Added: yes
/^X-Reject:/ REJECT 5.7.0 header says no
/^X-Defer:/ REJECT 4.7.0 try later
/^X-Warn:/ WARN header warn
/^X-Info:/ INFO header info
/^Content-Type:.*name="?bad\.exe/ REJECT attachment not allowed
/^Content-Description: drop/ IGNORE
/^X-Nested:/ PREPEND X-Nested-Seen: yes
/^X-Bcc:/ BCC copy@example.org
/^X-Pass:/ PASS no more checks
`

const oracleBodyChecks = `/^replace this line$/ REPLACE replaced line
/^drop this line$/ IGNORE
/^prepend here$/ PREPEND inserted line
/^reject body$/ REJECT body says no
/^strip body/ STRIP gone
/^warn body/ WARN body warn
/^--b1$/ PREPEND before boundary
`

var oracleMessages = []struct{ name, msg string }{
	{"line actions", "From: s@example.com\nTo: r@example.net\nDate: Sat, 28 Nov 2026 04:00:00 +0000\nMessage-ID: <1@example.com>\nX-Hold: yes\n" +
		"Subject: replace-me please\n folded\nX-Ignore: gone\nX-Strip: gone too\nX-Prepend: here\nX-Warn: w\nX-Info: i\nX-Bcc: b\n\n" +
		"first\nreplace this line\ndrop this line\nprepend here\nstrip body too\nwarn body\nlast\n"},
	{"mime parts", "From: s@example.com\nTo: r@example.net\nDate: Sat, 28 Nov 2026 04:00:00 +0000\nMessage-ID: <2@example.com>\nX-Hold: yes\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\npreamble\n--b1\nContent-Type: text/plain\nContent-Description: drop me\nX-Prepend: part\n\n" +
		"replace this line\n--b1\nContent-Type: message/rfc822\n\nSubject: replace-me nested\nX-Nested: 1\nX-Ignore: n\n\nnested body\ndrop this line\n--b1--\nepilogue\n"},
	{"garbage header", "From: s@example.com\nTo: r@example.net\nDate: Sat, 28 Nov 2026 04:00:00 +0000\nMessage-ID: <3@example.com>\nX-Hold: yes\n" +
		"this is not a header\nprepend here\n"},
	{"pass", "From: s@example.com\nTo: r@example.net\nDate: Sat, 28 Nov 2026 04:00:00 +0000\nMessage-ID: <4@example.com>\nX-Hold: yes\nX-Pass: 1\nX-Ignore: kept\n\ndrop this line\n"},
	{"reject header", "From: s@example.com\nTo: r@example.net\nX-Reject: 1\n\nbody\n"},
	{"defer header", "From: s@example.com\nTo: r@example.net\nX-Defer: 1\n\nbody\n"},
	{"reject body", "From: s@example.com\nTo: r@example.net\n\nreject body\n"},
	{"reject attachment", "From: s@example.com\nTo: r@example.net\nContent-Type: multipart/mixed; boundary=\"zz\"\n\n--zz\nContent-Type: application/octet-stream; name=\"bad.exe\"\n\nTVqQ\n--zz--\n"},
}

// TestPostfixCleanup sends messages through a private Postfix whose
// cleanup has header_checks and body_checks, and compares with the Walker:
// the reply to the end of DATA, cleanup's log lines, and, for messages
// kept on hold, the stored message as postcat shows it.
func TestPostfixCleanup(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a private Postfix")
	}
	postcat := oracle.Require(t, "postcat")
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main:  "header_checks = regexp:$config_directory/header_checks\nbody_checks = regexp:$config_directory/body_checks\n",
		Files: []oracle.File{{Name: "header_checks", Data: oracleHeaderChecks}, {Name: "body_checks", Data: oracleBodyChecks}},
	})
	dir := t.TempDir()
	writeFile(dir+"/h", oracleHeaderChecks)
	writeFile(dir+"/b", oracleBodyChecks)
	h, b := openTable(t, "regexp:"+dir+"/h"), openTable(t, "regexp:"+dir+"/b")
	for _, tc := range oracleMessages {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{HeaderChecks: h, MIMEHeaderChecks: h, NestedHeaderChecks: h, BodyChecks: b}
			comparePostfix(t, p, postcat, c, tc.msg)
		})
	}
}

var queuedRE = regexp.MustCompile(`queued as ([0-9A-F]+)`)

// comparePostfix sends msg (LF lines) to the private Postfix p and
// through a Walker with c, and compares the reply to the end of DATA,
// cleanup's log lines and, for a held message, what cleanup stored.
func comparePostfix(t *testing.T, p *oracle.Postfix, postcat string, c *Config, msg string) {
	t.Helper()
	logStart := len(p.Log())
	s := p.Session(t)
	for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<s@example.com>", "RCPT TO:<r@example.net>", "DATA"} {
		if r := s.Cmd(cmd); r.Code >= 400 {
			t.Fatalf("%s: %d %v", cmd, r.Code, r.Lines)
		}
	}
	r := s.Message(msg)
	s.Close()
	pfReply := fmt.Sprintf("%d %s", r.Code, strings.Join(r.Lines, " "))
	id := "QID"
	if m := queuedRE.FindStringSubmatch(pfReply); m != nil {
		id = m[1]
	}
	li := LogInfo{QueueID: id, Client: "unknown[127.0.0.1]", Sender: "s@example.com", Recipient: "r@example.net", Proto: "ESMTP", Helo: "client.test"}
	rec := &logRecorder{}
	c.Logger = slog.New(rec)
	var out bytes.Buffer
	w := c.NewWalker(context.Background(), &out, Hooks{}, li)
	w.Write([]byte(strings.ReplaceAll(msg, "\n", "\r\n")))
	v, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if v.Reject != nil {
		if want := v.Reject.String(); pfReply != want {
			t.Errorf("Postfix replied %q, the Walker's verdict is %q", pfReply, want)
		}
	} else if r.Code != 250 {
		t.Errorf("Postfix replied %q, the Walker accepts", pfReply)
	}
	// Cleanup's log lines for this message. A rejected message gets no
	// "queued as": its lines are the cleanup lines logged since the start.
	var pfLog []string
	for _, l := range strings.Split(p.Log()[logStart:], "\n") {
		i := strings.Index(l, "postfix/cleanup[")
		if i < 0 {
			continue
		}
		l = l[strings.Index(l[i:], "]: ")+i+3:]
		j := strings.Index(l, ": ")
		if j < 0 || strings.Contains(l, "message-id=") || strings.HasPrefix(l, "warning:") {
			continue
		}
		if id == "QID" {
			l = "QID" + l[j:]
		}
		// The Received header Postfix's smtpd adds reaches cleanup's
		// checks too; the Walker here gets the message without it.
		if strings.HasPrefix(l, id+": ") && !strings.Contains(l, ": header Received: from client.test (unknown [127.0.0.1])") {
			pfLog = append(pfLog, l)
		}
	}
	var ours []string
	for _, l := range rec.lines {
		if !strings.HasPrefix(l, "warning:") {
			ours = append(ours, l)
		}
	}
	if strings.Join(pfLog, "\n") != strings.Join(ours, "\n") {
		t.Errorf("log lines differ:\nPostfix:\n%s\nWalker:\n%s", strings.Join(pfLog, "\n"), strings.Join(ours, "\n"))
	}
	if id == "QID" || !v.Hold {
		return
	}
	res, err := oracle.Exec(postcat, nil, "-c", p.ConfigDir, "-bh", "-q", id)
	if err != nil || res.Code != 0 {
		t.Fatalf("postcat: %v %s", err, res.Stderr)
	}
	stored := postcatContent(string(res.Stdout))
	got := strings.ReplaceAll(out.String(), "\r\n", "\n")
	if stored != got {
		t.Errorf("stored message differs:\nPostfix:\n%q\nWalker:\n%q", stored, got)
	}
}

// postcatContent takes the message from postcat -bh output, without the
// section markers and without the Received header Postfix added on top.
func postcatContent(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "*** ") {
			continue
		}
		lines = append(lines, l)
	}
	// Drop the leading Received header and its continuation lines.
	i := 0
	if len(lines) > 0 && strings.HasPrefix(lines[0], "Received:") {
		i = 1
		for i < len(lines) && (strings.HasPrefix(lines[i], " ") || strings.HasPrefix(lines[i], "\t")) {
			i++
		}
	}
	return strings.Join(lines[i:], "\n")
}

// TestPostfixLimits compares the limits and strict_* tests with a private
// Postfix configured for each case: Postfix's replies (with their texts),
// log lines, and the stored message where a header was cut or a long
// line inspected in pieces.
func TestPostfixLimits(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a private Postfix")
	}
	postcat := oracle.Require(t, "postcat")
	const checks = "/^X-Hold:/ HOLD\n/^Subject:/ WARN subject\n"
	const bchecks = "/^w/ WARN w-line\n/^a{10}/ REPLACE replaced piece\n/^b/ INFO b-piece\n"
	p := oracle.StartPostfix(t, oracle.PostfixOptions{})
	dir := t.TempDir()
	writeFile(dir+"/h", checks)
	writeFile(dir+"/b", bchecks)
	h, b := openTable(t, "regexp:"+dir+"/h"), openTable(t, "regexp:"+dir+"/b")
	files := []oracle.File{{Name: "h", Data: checks}, {Name: "b", Data: bchecks}}
	const tables = "header_checks = regexp:$config_directory/h\nbody_checks = regexp:$config_directory/b\n"
	const hdrs = "From: s@example.com\nTo: r@example.net\nDate: Sat, 28 Nov 2026 04:00:00 +0000\nMessage-ID: <l@example.com>\n"
	nested := func(depth int) string {
		var s strings.Builder
		for i := 0; i < depth; i++ {
			fmt.Fprintf(&s, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
		}
		return s.String() + "\ntext\n"
	}
	long := func(c string, n int) string { return strings.Repeat(c, n) }
	tests := []struct {
		name, main string
		c          Config
		msg        string
	}{
		{"strict_7bit_headers", "strict_7bit_headers = yes\n", Config{Strict7bitHeaders: true}, hdrs + "Subject: caf\xc3\xa9\n\nbody\n"},
		{"strict_8bitmime_body", "strict_8bitmime_body = yes\n", Config{Strict8bitMIMEBody: true}, hdrs + "Subject: x\n\ncaf\xc3\xa9\n"},
		{"strict_8bitmime declared", "strict_8bitmime = yes\n", Config{Strict8bitMIME: true}, hdrs + "X-Hold: 1\nContent-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9\n"},
		{"strict_mime_encoding_domain", "strict_mime_encoding_domain = yes\n", Config{StrictMIMEEncodingDomain: true},
			hdrs + "Content-Type: multipart/mixed; boundary=x\nContent-Transfer-Encoding: quoted-printable\n\n--x--\n"},
		{"mime_nesting_limit", "mime_nesting_limit = 3\n", Config{MIMENestingLimit: 3}, hdrs + nested(6)},
		{"mime_nesting_limit ok", "mime_nesting_limit = 3\n", Config{MIMENestingLimit: 3}, hdrs + "X-Hold: 1\n" + nested(5)},
		{"header_size_limit", "header_size_limit = 100\n", Config{HeaderSizeLimit: 100},
			hdrs + "X-Hold: 1\nSubject: " + long("s", 60) + "\n " + long("t", 30) + "\n " + long("u", 30) + "\n " + long("v", 30) + "\n\nbody\n"},
		{"line_length_limit", "line_length_limit = 512\n", Config{LineLengthLimit: 512},
			hdrs + "X-Hold: 1\nSubject: " + long("h", 1200) + "\n\n" + long("a", 1300) + "\nb" + long("x", 511) + long("b", 600) + "\n"},
		{"header_size_limit unkind cut", "header_size_limit = 100\n", Config{HeaderSizeLimit: 100},
			hdrs + "X-Hold: 1\nSubject: " + long("s", 20) + "\n " + long("t", 30) + "\n " + long("u", 80) + "\n " + long("v", 30) + "\n\nbody\n"},
		{"body_checks_size_limit", "body_checks_size_limit = 60\n", Config{BodyChecksSizeLimit: 60},
			hdrs + "X-Hold: 1\nContent-Type: multipart/mixed; boundary=q\n\nw0 " + long("p", 30) + "\nw1\n" + long("p", 20) + "\nw2\nw3\n--q\n\nw4\n" + long("q", 50) + "\nw5\nw6\n--q--\n"},
		{"disable_mime_input_processing", "disable_mime_input_processing = yes\nstrict_8bitmime = yes\n", Config{DisableMIMEInputProcessing: true, Strict8bitMIME: true},
			hdrs + "X-Hold: 1\nContent-Type: multipart/mixed; boundary=q\n\n--q\n\nw\xc3\xa9\n--q--\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p.Reconfigure(t, tables+tc.main, files)
			c := tc.c
			c.HeaderChecks, c.MIMEHeaderChecks, c.NestedHeaderChecks, c.BodyChecks = h, h, h, b
			comparePostfix(t, p, postcat, &c, tc.msg)
		})
	}
}

// TestPostfixTableClasses gives header_checks, mime_header_checks,
// nested_header_checks and body_checks tables that say which one they
// are, and compares which table Postfix's cleanup and the Walker ask for
// each header and line of a message with parts and an attached message.
func TestPostfixTableClasses(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a private Postfix")
	}
	postcat := oracle.Require(t, "postcat")
	tables := map[string]string{
		"h": "/^X-Hold:/ HOLD\n/./ WARN header_checks\n",
		"m": "/./ WARN mime_header_checks\n",
		"n": "/./ WARN nested_header_checks\n",
		"b": "/./ INFO body_checks\n",
	}
	var files []oracle.File
	dir := t.TempDir()
	for name, data := range tables {
		files = append(files, oracle.File{Name: name, Data: data})
		writeFile(dir+"/"+name, data)
	}
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "header_checks = regexp:$config_directory/h\nmime_header_checks = regexp:$config_directory/m\n" +
			"nested_header_checks = regexp:$config_directory/n\nbody_checks = regexp:$config_directory/b\n",
		Files: files,
	})
	c := &Config{HeaderChecks: openTable(t, "regexp:"+dir+"/h"), MIMEHeaderChecks: openTable(t, "regexp:"+dir+"/m"),
		NestedHeaderChecks: openTable(t, "regexp:"+dir+"/n"), BodyChecks: openTable(t, "regexp:"+dir+"/b")}
	msg := "From: s@example.com\nTo: r@example.net\nDate: Sat, 28 Nov 2026 04:00:00 +0000\nMessage-ID: <c@example.com>\nX-Hold: 1\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/digest;\n boundary=\"d1\"\nX-Primary: p\n\npreamble\n" +
		"--d1\n\nDefault: digest part is message/rfc822\nContent-Type: text/plain\n\ndigest body\n" +
		"--d1\nContent-Type: multipart/alternative; boundary=a2\nX-Part: 2\n\n--a2\nContent-Type: text/plain\nContent-Disposition: inline\n\nalt text\n" +
		"--a2\nContent-Type: message/rfc822\n\nSubject: nested\nMIME-Version: 1.0\nContent-ID: <x>\nX-Nested: n\n\nnested body\n--a2--\n" +
		"--d1--\nepilogue\n"
	comparePostfix(t, p, postcat, c, msg)
}

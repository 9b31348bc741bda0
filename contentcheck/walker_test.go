package contentcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/restrictions"
)

// logRecorder is a slog.Handler that keeps the messages.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.lines = append(r.lines, rec.Message)
	r.mu.Unlock()
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func inlineRegexp(t testing.TB, rules ...string) maps.Map {
	t.Helper()
	if len(rules) == 0 {
		return nil
	}
	f := t.TempDir() + "/rules"
	if err := writeFile(f, strings.Join(rules, "\n")+"\n"); err != nil {
		t.Fatal(err)
	}
	return openTable(t, "regexp:"+f)
}

var info = LogInfo{QueueID: "4ABCDEF", Client: "client.example[192.0.2.1]", Sender: "s@example.com",
	Recipient: "r@example.net", Proto: "ESMTP", Helo: "helo.example"}

// walk runs msg through a Walker writing chunk bytes at a time (0: all
// at once) and returns the output, the verdict and the log lines.
func walk(t testing.TB, c *Config, hooks Hooks, msg string, chunk int) (string, Verdict, []string) {
	t.Helper()
	rec := &logRecorder{}
	c.Logger = slog.New(rec)
	var out bytes.Buffer
	w := c.NewWalker(context.Background(), &out, hooks, info)
	p := []byte(msg)
	for len(p) > 0 {
		n := len(p)
		if chunk > 0 && chunk < n {
			n = chunk
		}
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		p = p[n:]
	}
	v, err := w.Close()
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	return out.String(), v, rec.lines
}

const plainMsg = "From: a@example.com\r\nSubject: hello\r\n  world\r\nTo: b@example.net\r\n\r\nline one\r\nbuy now\r\n\r\nbye\r\n"

func TestActions(t *testing.T) {
	reply := func(code int, dsn, text string) *restrictions.Reply {
		return &restrictions.Reply{Code: code, DSN: dsn, Text: text}
	}
	const pfx = "4ABCDEF: "
	const from = " from client.example[192.0.2.1]; from=<s@example.com> to=<r@example.net> proto=ESMTP helo=<helo.example>"
	tests := []struct {
		name    string
		header  []string
		body    []string
		wantOut string // "" means unchanged
		wantV   Verdict
		wantLog []string
	}{
		{name: "no match", header: []string{"/^X-Nothing:/ REJECT"}},
		{name: "reject default", header: []string{"/^Subject:.*world/ REJECT"},
			wantV:   Verdict{Reject: reply(550, "5.7.1", "message content rejected")},
			wantLog: []string{pfx + "reject: header Subject: hello?  world" + from + ": 5.7.1 message content rejected"}},
		{name: "reject text", body: []string{"/^buy now$/ REJECT no spam please"},
			wantV:   Verdict{Reject: reply(550, "5.7.1", "no spam please")},
			wantLog: []string{pfx + "reject: body buy now" + from + ": 5.7.1 no spam please"}},
		{name: "reject dsn", body: []string{"/^buy/ reject 5.7.0 go away"},
			wantV:   Verdict{Reject: reply(550, "5.7.0", "go away")},
			wantLog: []string{pfx + "reject: body buy now" + from + ": 5.7.0 go away"}},
		{name: "defer", body: []string{"/^buy/ REJECT 4.7.1 later"},
			wantV:   Verdict{Reject: reply(451, "4.7.1", "later")},
			wantLog: []string{pfx + "reject: body buy now" + from + ": 4.7.1 later"}},
		{name: "reject stops inspection", header: []string{"/^From:/ REJECT", "/^To:/ WARN w"}, body: []string{"/buy/ WARN b"},
			wantV:   Verdict{Reject: reply(550, "5.7.1", "message content rejected")},
			wantLog: []string{pfx + "reject: header From: a@example.com" + from + ": 5.7.1 message content rejected"}},
		{name: "warn info", header: []string{"/^To:/ WARN watch this"}, body: []string{"/^bye/ INFO the end"},
			wantLog: []string{pfx + "warning: header To: b@example.net" + from + ": watch this", pfx + "info: body bye" + from + ": the end"}},
		{name: "ignore header", header: []string{"/^Subject:/ IGNORE"},
			wantOut: "From: a@example.com\r\nTo: b@example.net\r\n\r\nline one\r\nbuy now\r\n\r\nbye\r\n"},
		{name: "strip body", body: []string{"/^buy/ STRIP gone"},
			wantOut: "From: a@example.com\r\nSubject: hello\r\n  world\r\nTo: b@example.net\r\n\r\nline one\r\n\r\nbye\r\n",
			wantLog: []string{pfx + "strip: body buy now" + from + ": gone"}},
		{name: "prepend replace", header: []string{"/^To:/ PREPEND X-Seen: yes", "/^Subject:/ REPLACE Subject: [x] hi"}, body: []string{"/^bye/ REPLACE ciao", "/^line/ PREPEND before"},
			wantOut: "From: a@example.com\r\nSubject: [x] hi\r\nX-Seen: yes\r\nTo: b@example.net\r\n\r\nbefore\r\nline one\r\nbuy now\r\n\r\nciao\r\n",
			wantLog: []string{pfx + "replace: header Subject: hello?  world" + from + ": Subject: [x] hi", pfx + "prepend: header To: b@example.net" + from + ": X-Seen: yes",
				pfx + "prepend: body line one" + from + ": before", pfx + "replace: body bye" + from + ": ciao"}},
		{name: "bad prepend", header: []string{"/^To:/ PREPEND no header here", "/^From:/ REPLACE"},
			wantLog: []string{"warning: REPLACE action without text in header_checks map", `warning: bad PREPEND header text "no header here" in header_checks map -- need "headername: headervalue"`}},
		{name: "hold discard", header: []string{"/^From:/ HOLD first", "/^To:/ HOLD second"}, body: []string{"/^buy/ DISCARD"},
			wantV:   Verdict{Hold: true, HoldText: "first", Discard: true},
			wantOut: "From: a@example.com\r\nSubject: hello\r\n  world\r\nTo: b@example.net\r\n\r\nline one\r\n",
			wantLog: []string{pfx + "hold: header From: a@example.com" + from + ": first", pfx + "discard: body buy now" + from}},
		{name: "filter redirect bcc", header: []string{"/^From:/ FILTER smtp:[127.0.0.1]:10025", "/^Subject:/ BCC x@example.org", "/^To:/ FILTER nocolon"},
			body:  []string{"/^line/ BCC y@example.org", "/^buy/ REDIRECT z@example.org", "/^bye/ BCC late@example.org"},
			wantV: Verdict{Filter: "smtp:[127.0.0.1]:10025", BCC: []string{"x@example.org", "y@example.org"}, Redirect: "z@example.org"},
			wantLog: []string{pfx + "filter: header From: a@example.com" + from + ": smtp:[127.0.0.1]:10025", pfx + "bcc: header Subject: hello?  world" + from + ": x@example.org",
				"warning: bad FILTER command nocolon in header_checks -- need transport:destination",
				pfx + "bcc: body line one" + from + ": y@example.org", pfx + "redirect: body buy now" + from + ": z@example.org"}},
		{name: "bcc once", body: []string{"/./ BCC x@example.org"},
			wantV:   Verdict{BCC: []string{"x@example.org"}},
			wantLog: []string{pfx + "bcc: body line one" + from + ": x@example.org", pfx + "bcc: body buy now" + from + ": x@example.org", pfx + "bcc: body bye" + from + ": x@example.org"}},
		{name: "bad redirect", body: []string{"/^buy/ REDIRECT nobody"},
			wantLog: []string{`warning: bad REDIRECT target "nobody" in body_checks map -- need user@domain`}},
		{name: "pass", header: []string{"/^Subject:/ PASS ok"}, body: []string{"/buy/ REJECT"},
			wantLog: []string{pfx + "pass: header Subject: hello?  world" + from + ": ok"}},
		{name: "dunno ok unknown", header: []string{"/^From:/ DUNNO", "/^Subject:/ OK", "/^To:/ FROB x"}, body: []string{"/./ dunno"},
			wantLog: []string{"warning: unknown command in header_checks map: FROB x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{HeaderChecks: inlineRegexp(t, tc.header...), BodyChecks: inlineRegexp(t, tc.body...)}
			c.MIMEHeaderChecks, c.NestedHeaderChecks = c.HeaderChecks, c.HeaderChecks
			for _, chunk := range []int{0, 1, 7} {
				out, v, logs := walk(t, c, Hooks{}, plainMsg, chunk)
				want := tc.wantOut
				if want == "" {
					want = plainMsg
				}
				if out != want && !(tc.wantV.Reject != nil) {
					t.Errorf("chunk %d: output\n%q\nwant\n%q", chunk, out, want)
				}
				if !reflect.DeepEqual(v, tc.wantV) {
					t.Errorf("chunk %d: verdict %+v, want %+v", chunk, v, tc.wantV)
				}
				if !reflect.DeepEqual(logs, tc.wantLog) {
					t.Errorf("chunk %d: logs\n%q\nwant\n%q", chunk, logs, tc.wantLog)
				}
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	tests := []struct {
		in   string
		want Action
	}{
		{"REJECT", Action{Kind: Reject, Command: "REJECT", Reply: restrictions.Reply{Code: 550, DSN: "5.7.1", Text: "message content rejected"}}},
		{"reject\t 4.2.0  busy", Action{Kind: Reject, Command: "reject", Text: "4.2.0  busy", Reply: restrictions.Reply{Code: 451, DSN: "4.2.0", Text: "busy"}}},
		{"REJECT 2.0.0 odd", Action{Kind: Reject, Command: "REJECT", Text: "2.0.0 odd", Reply: restrictions.Reply{Code: 451, DSN: "4.0.0", Text: "odd"}}},
		{"REJECT 5.7.1x no dsn", Action{Kind: Reject, Command: "REJECT", Text: "5.7.1x no dsn", Reply: restrictions.Reply{Code: 550, DSN: "5.7.1", Text: "5.7.1x no dsn"}}},
		{"Prepend X-A: b", Action{Kind: Prepend, Command: "Prepend", Text: "X-A: b"}},
		{"ok", Action{Kind: Dunno, Command: "ok"}},
		{"550 text", Action{Kind: Dunno, Command: "550", Text: "text", Unknown: true}},
		{"STRIP", Action{Kind: Strip, Command: "STRIP"}},
	}
	for _, tc := range tests {
		if got := ParseAction(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseAction(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestTableClasses checks which table sees which header and line.
func TestTableClasses(t *testing.T) {
	msg := "Subject: top\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n" +
		"--b1\r\nContent-Type: text/plain\r\nX-Part: p1\r\n\r\npart one\r\n" +
		"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n" +
		"--b1--\r\nepilogue\r\n"
	var mu sync.Mutex
	seen := map[string][]string{}
	tab := func(name string) maps.Map {
		return maps.FuncMap(func(_ context.Context, key string) (string, bool, error) {
			mu.Lock()
			seen[name] = append(seen[name], key)
			mu.Unlock()
			return "", false, nil
		})
	}
	c := &Config{HeaderChecks: tab("header"), MIMEHeaderChecks: tab("mime"), NestedHeaderChecks: tab("nested"), BodyChecks: tab("body")}
	out, _, _ := walk(t, c, Hooks{}, msg, 3)
	if out != msg {
		t.Errorf("output changed:\n%q", out)
	}
	want := map[string][]string{
		"header": {"subject: top"},
		"mime":   {"mime-version: 1.0", `content-type: multipart/mixed; boundary="b1"`, "content-type: text/plain", "x-part: p1", "content-type: message/rfc822", "content-type: text/plain"},
		"nested": {"subject: inner"},
		"body":   {"preamble", "--b1", "part one", "--b1", "inner body", "--b1--", "epilogue"},
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("lookups:\n%q\nwant\n%q", seen, want)
	}
	// Without MIME processing everything after the headers is body, and a
	// MIME table that is nil leaves MIME headers alone.
	seen = map[string][]string{}
	c = &Config{HeaderChecks: tab("header"), BodyChecks: tab("body"), DisableMIMEInputProcessing: true}
	walk(t, c, Hooks{}, msg, 0)
	if got := seen["header"]; !reflect.DeepEqual(got, []string{"subject: top"}) {
		t.Errorf("header lookups %q", got)
	}
	if n := len(seen["body"]); n != 12 {
		t.Errorf("%d body lookups, want 12: %q", n, seen["body"])
	}
}

func TestHooks(t *testing.T) {
	c := &Config{HeaderChecks: inlineRegexp(t, "/^Subject:/ REPLACE Subject: new", "/^X-Drop:/ IGNORE", "/^To:/ PREPEND X-Pre: 1")}
	var seen, got []string
	hooks := Hooks{
		Seen: func(h *Header) { seen = append(seen, h.Name+"|"+h.Value()) },
		Header: func(h *Header, w io.Writer) error {
			got = append(got, h.Key())
			if h.Name == "To" {
				_, err := io.WriteString(w, "To: rewritten@example.net\r\n")
				return err
			}
			_, err := w.Write(h.Raw)
			return err
		},
		EndOfHeaders: func(w io.Writer) error {
			_, err := io.WriteString(w, "Date: added\r\n")
			return err
		},
	}
	msg := "Subject: old\r\n folded\r\nX-Drop: x\r\nTo: a@example\r\n\r\nbody\r\n"
	out, _, _ := walk(t, c, hooks, msg, 0)
	if want := "Subject: new\r\nX-Pre: 1\r\nTo: rewritten@example.net\r\nDate: added\r\n\r\nbody\r\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	if want := []string{"Subject|old folded", "X-Drop|x", "To|a@example"}; !reflect.DeepEqual(seen, want) {
		t.Errorf("Seen %q, want %q", seen, want)
	}
	if want := []string{"Subject: new", "To: a@example"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Header %q, want %q", got, want)
	}
	// No body: EndOfHeaders still runs, and no blank line is made up.
	out, _, _ = walk(t, &Config{}, hooks, "To: x\r\n", 0)
	if want := "To: rewritten@example.net\r\nDate: added\r\n"; out != want {
		t.Errorf("headers only: %q, want %q", out, want)
	}
	// A hook error ends the walk.
	boom := errors.New("boom")
	w := (&Config{}).NewWalker(context.Background(), io.Discard, Hooks{Header: func(*Header, io.Writer) error { return boom }}, info)
	w.Write([]byte("A: b\r\n\r\n"))
	if _, err := w.Close(); !errors.Is(err, boom) {
		t.Errorf("Close error %v, want boom", err)
	}
}

func TestHeaderSplitting(t *testing.T) {
	var keys []string
	rec := recordKeysMap{&keys}
	tests := []struct {
		name, msg string
		c         Config
		keys      []string
		out       string
	}{
		{name: "name space colon", msg: "Subject \t: x\r\n\r\n", keys: []string{"Subject: x"}},
		{name: "stray CR", msg: "Subject: a\rb\r\n\r\nc\rd\r\n", keys: []string{"Subject: a b", "c d"}, out: "Subject: a b\r\n\r\nc d\r\n"},
		{name: "garbage ends headers", msg: "Subject: x\r\nnot a header\r\nbody\r\n", keys: []string{"Subject: x", "not a header", "body"},
			out: "Subject: x\r\n\r\nnot a header\r\nbody\r\n"},
		{name: "leading space", msg: " Subject: x\r\n\r\n", keys: []string{" Subject: x"}, out: "\r\n Subject: x\r\n\r\n"},
		{name: "header size limit", c: Config{HeaderSizeLimit: 14}, msg: "Subject: 0123\r\n 4567\r\n 89\r\nTo: y\r\n\r\n",
			keys: []string{"Subject: 0123\n 4567", "To: y"}, out: "Subject: 0123\r\nTo: y\r\n\r\n"},
		{name: "header size unkind cut", c: Config{HeaderSizeLimit: 17}, msg: "Subject: 0123\r\n 4567\r\n 89\r\nTo: y\r\n\r\n",
			keys: []string{"Subject: 0123\n 4567", "To: y"}, out: "Subject: 0123\r\n 45\r\nTo: y\r\n\r\n"},
		{name: "line pieces", c: Config{LineLengthLimit: 4}, msg: "A: 12345\r\n\r\nabcdefghij\r\n",
			keys: []string{"A: 12345", "abcd", "efgh", "ij"}},
		{name: "body size limit", c: Config{BodyChecksSizeLimit: 8}, msg: "A: b\r\n\r\n12345\r\nx\r\ny\r\n",
			keys: []string{"A: b", "12345", "x"}},
		{name: "bare LF", msg: "A: b\n c\n\nd\n", keys: []string{"A: b\n c", "d"}},
		{name: "no final newline", msg: "A: b\r\n\r\nlast", keys: []string{"A: b", "last"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.HeaderChecks, c.BodyChecks = rec, rec
			for _, chunk := range []int{0, 1, 3} {
				keys = nil
				out, _, _ := walk(t, &c, Hooks{}, tc.msg, chunk)
				if !reflect.DeepEqual(keys, tc.keys) {
					t.Errorf("chunk %d: keys %q, want %q", chunk, keys, tc.keys)
				}
				want := tc.out
				if want == "" {
					want = tc.msg
				}
				if out != want {
					t.Errorf("chunk %d: output %q, want %q", chunk, out, want)
				}
			}
		})
	}
}

func (r recordKeysMap) Lookup(_ context.Context, key string) (string, bool, error) {
	*r.keys = append(*r.keys, key)
	return "", false, nil
}

type recordKeysMap struct{ keys *[]string }

func TestMIMEErrors(t *testing.T) {
	nested := func(depth int) string {
		var b strings.Builder
		b.WriteString("Subject: deep\r\n")
		for i := 0; i < depth; i++ {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
		}
		b.WriteString("\r\ntext\r\n")
		return b.String()
	}
	tests := []struct {
		name string
		c    Config
		msg  string
		want *restrictions.Reply
		log  string
	}{
		{"8bit header", Config{Strict7bitHeaders: true}, "Subject: caf\xe9\r\n\r\nok\r\n",
			&restrictions.Reply{Code: 550, DSN: "5.6.0", Text: "improper use of 8-bit data in message header"},
			"4ABCDEF: reject: mime-error improper use of 8-bit data in message header: Subject: caf? from client.example[192.0.2.1]; from=<s@example.com> to=<r@example.net>"},
		{"8bit header allowed", Config{Strict8bitMIMEBody: true}, "Subject: caf\xe9\r\n\r\nok\r\n", nil, ""},
		{"8bit body", Config{Strict8bitMIME: true}, "Subject: x\r\n\r\ncaf\xe9\r\n",
			&restrictions.Reply{Code: 550, DSN: "5.6.0", Text: "improper use of 8-bit data in message body"}, ""},
		{"8bit body declared", Config{Strict8bitMIMEBody: true}, "Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n", nil, ""},
		{"encoding domain", Config{StrictMIMEEncodingDomain: true}, "Content-Type: multipart/mixed; boundary=x\r\nContent-Transfer-Encoding: base64\r\n\r\n--x--\r\n",
			&restrictions.Reply{Code: 550, DSN: "5.6.0", Text: "invalid message/* or multipart/* encoding domain"}, ""},
		{"nesting", Config{MIMENestingLimit: 3, Strict8bitMIME: true}, nested(6),
			&restrictions.Reply{Code: 550, DSN: "5.6.0", Text: "MIME nesting exceeds safety limit"}, ""},
		{"nesting at limit", Config{MIMENestingLimit: 3, Strict8bitMIME: true}, nested(5), nil, ""},
		{"nesting unreported", Config{MIMENestingLimit: 3}, nested(6), nil, ""},
		{"no MIME no strict", Config{Strict8bitMIME: true, DisableMIMEInputProcessing: true}, "Subject: caf\xe9\r\n\r\ncaf\xe9\r\n", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			out, v, logs := walk(t, &c, Hooks{}, tc.msg, 0)
			if !reflect.DeepEqual(v.Reject, tc.want) {
				t.Errorf("reject %+v, want %+v", v.Reject, tc.want)
			}
			if out != tc.msg {
				t.Errorf("output changed: %q", out)
			}
			if tc.log != "" && (len(logs) != 1 || logs[0] != tc.log) {
				t.Errorf("logs %q, want %q", logs, tc.log)
			}
		})
	}
}

func TestLookupErrorDefers(t *testing.T) {
	c := &Config{BodyChecks: maps.FuncMap(func(context.Context, string) (string, bool, error) {
		return "", false, errors.New("database down")
	})}
	_, v, logs := walk(t, c, Hooks{}, plainMsg, 0)
	if want := (&restrictions.Reply{Code: 451, DSN: "4.3.0", Text: "Error: queue file write error"}); !reflect.DeepEqual(v.Reject, want) {
		t.Errorf("reject %+v, want %+v", v.Reject, want)
	}
	if len(logs) != 1 || !strings.HasPrefix(logs[0], "warning: 4ABCDEF: body_checks map lookup problem -- message not accepted, try again later") {
		t.Errorf("logs %q", logs)
	}
}

// TestCorpusUnchanged: without tables the Walker gives back every corpus
// message byte for byte, whatever the chunking, except where Postfix
// changes it too (a missing blank line after the headers, stray CRs).
func TestCorpusUnchanged(t *testing.T) {
	paths := corpusMessages(t, sampleStep())
	changed := 0
	for i, p := range paths {
		msg := corpus.Message(t, p)
		out, _, _ := walk(t, &Config{}, Hooks{}, string(msg), []int{0, 1, 5, 4096}[i%4])
		if out == string(msg) {
			continue
		}
		changed++
		fixed := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
		fixed = bytes.ReplaceAll(fixed, []byte("\r"), []byte(" "))
		fixed = bytes.ReplaceAll(fixed, []byte("\n"), []byte("\r\n"))
		if !bytes.Equal(fixed, []byte(out)) && !blankInserted(fixed, []byte(out)) {
			t.Errorf("%s: output differs from the input beyond Postfix's own changes", p)
		}
	}
	t.Logf("%d messages, %d changed as Postfix changes them", len(paths), changed)
}

func writeFile(name, data string) error { return os.WriteFile(name, []byte(data), 0o644) }

// blankInserted reports whether out is in with one blank line inserted at
// a line boundary, as Postfix inserts it after headers that end without one.
func blankInserted(in, out []byte) bool {
	i := 0
	for i < len(in) && i < len(out) && in[i] == out[i] {
		i++
	}
	for i > 0 && out[i-1] != '\n' {
		i--
	}
	return bytes.HasPrefix(out[i:], []byte("\r\n")) && bytes.Equal(out[i+2:], in[i:])
}

func TestContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w := (&Config{}).NewWalker(ctx, io.Discard, Hooks{}, info)
	if _, err := w.Write([]byte("A: b\r\n")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Write([]byte("\r\nbody\r\n")); !errors.Is(err, context.Canceled) {
		t.Errorf("Write after cancel: %v", err)
	}
	if _, err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
}

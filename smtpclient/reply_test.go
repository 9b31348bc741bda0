package smtpclient

import (
	"bufio"
	"errors"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		in       string
		code     int
		enhanced string
		str      string
		err      error
	}{
		{"250 2.1.0 Ok\r\n", 250, "2.1.0", "250 2.1.0 Ok", nil},
		{"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 250, "", "250-mx.example 250-PIPELINING 250 8BITMIME", nil},
		{"550-5.7.1 first\n550 5.7.1 second\n", 550, "5.7.1", "550-5.7.1 first 550 5.7.1 second", nil},
		{"354\r\n", 354, "", "354", nil},
		{"250 \r\n", 250, "", "250", nil},
		{"451 5.0.0 class mismatch\r\n", 451, "", "451 5.0.0 class mismatch", nil},
		{"250 2.0.0\r\n", 250, "2.0.0", "250 2.0.0", nil},
		{"250 2.1234.0 too long\r\n", 250, "", "250 2.1234.0 too long", nil},
		{"250-a\r\n251 b\r\n", 0, "", "", ErrMalformedReply},
		{"25\r\n", 0, "", "", ErrMalformedReply},
		{"abc def\r\n", 0, "", "", ErrMalformedReply},
		{"250xfoo\r\n", 0, "", "", ErrMalformedReply},
		{"199 low\r\n", 0, "", "", ErrMalformedReply},
		{"250-cut", 0, "", "", io.ErrUnexpectedEOF},
		{"250-a\r\n", 0, "", "", io.ErrUnexpectedEOF},
		{"", 0, "", "", io.EOF},
		{"250 " + strings.Repeat("x", MaxReplyLineLength+10) + "\r\n", 0, "", "", ErrMalformedReply},
		{strings.Repeat("250-x\r\n", MaxReplyLines+1), 0, "", "", ErrMalformedReply},
	}
	for _, tt := range tests {
		r, err := ReadReply(bufio.NewReaderSize(strings.NewReader(tt.in), 16))
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%.40q: err %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || r.Code != tt.code || r.Enhanced != tt.enhanced || r.String() != tt.str {
			t.Errorf("%q: got %d %q %q %v", tt.in, r.Code, r.Enhanced, r.String(), err)
		}
	}
	r, _ := ReadReply(bufio.NewReader(strings.NewReader("421 4.4.2 mx closing\r\n")))
	if r.DSN() != "4.4.2" || r.Text() != "mx closing" || !r.Temporary() {
		t.Errorf("%q %q", r.DSN(), r.Text())
	}
	r, _ = ReadReply(bufio.NewReader(strings.NewReader("554 no enhanced code\r\n")))
	if r.DSN() != "5.0.0" || !r.Permanent() {
		t.Errorf("%q", r.DSN())
	}
}

// FuzzReadReply: any input gives a reply or an error, never a panic; a
// reply read back from its own rendering is the same reply.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "550 5.1.1 <x>: no\r\n", "354\r\n", "250-\r\n250 \r\n", "4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), 16)
		for range 5 {
			r, err := ReadReply(br)
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 || len(r.Lines) > MaxReplyLines {
				t.Fatalf("bad reply %+v from %q", r, in)
			}
			// Any reply may be an EHLO reply.
			e := parseExtensions(r.Lines)
			if e.SizeLimit < 0 || e.Keywords == nil {
				t.Fatalf("extensions %+v", e)
			}
			var wire strings.Builder
			for i, l := range r.Lines {
				sep := "-"
				if i == len(r.Lines)-1 {
					sep = " "
				}
				wire.WriteString(strings.TrimRight(itoa3(r.Code)+sep+l, "\r") + "\r\n")
			}
			r2, err := ReadReply(bufio.NewReader(strings.NewReader(wire.String())))
			if err != nil || r2.Code != r.Code || r2.Enhanced != r.Enhanced || len(r2.Lines) != len(r.Lines) {
				if !strings.ContainsAny(wire.String()[:len(wire.String())-2], "\r") {
					t.Fatalf("round trip %+v -> %+v %v", r, r2, err)
				}
			}
		}
	})
}

func itoa3(n int) string {
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

func TestParseExtensions(t *testing.T) {
	e := parseExtensions([]string{"mx.example hello", "PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN", "AUTH=CRAM-MD5", "8bitmime", "DSN", "SMTPUTF8", "STARTTLS", "ENHANCEDSTATUSCODES", "CHUNKING", ""})
	if !e.Pipelining || e.SizeLimit != 10240000 || !e.EightBitMIME || !e.DSN || !e.SMTPUTF8 || !e.StartTLS || !e.EnhancedStatusCodes || !e.Chunking {
		t.Errorf("%+v", e)
	}
	if strings.Join(e.Auth, " ") != "PLAIN LOGIN CRAM-MD5" {
		t.Errorf("auth %v", e.Auth)
	}
	if _, ok := e.Keywords["MX.EXAMPLE"]; ok {
		t.Error("greeting line taken as keyword")
	}
}

type collect struct{ lines []string }

func (c *collect) line(l []byte) error { c.lines = append(c.lines, string(l)); return nil }

func downgrade(t *testing.T, msg string) (string, bool) {
	t.Helper()
	out := &collect{}
	d := newDowngrader(out)
	if err := copyLines(d, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := d.finish(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out.lines, "\n") + "\n", d.converted
}

func TestDowngrade(t *testing.T) {
	long := strings.Repeat("\xe4", 60) // 180 encoded bytes: soft breaks
	msg := "Content-Type: multipart/mixed; boundary=outer\n\n--outer\n" +
		"Content-Type: message/rfc822\n\n" +
		"Subject: inner\nContent-Type: text/plain\nContent-Transfer-Encoding: 8BIT\n\n" + long + "\n" +
		"--outer\nContent-Type: multipart/alternative;\n boundary=\"in ner\"\n\n--in ner\nContent-Transfer-Encoding:\n 8bit\n\nx\xffy\n--in ner--\n--outer--\nepilogue \xff\n"
	got, conv := downgrade(t, msg)
	if !conv {
		t.Fatal("not converted")
	}
	for _, l := range strings.Split(got, "\n") {
		if len(l) > 76 {
			t.Errorf("line over 76: %q", l)
		}
	}
	// The inner message's body decodes back to the original.
	start := strings.Index(got, "quoted-printable\n\n") + len("quoted-printable\n\n")
	end := start + strings.Index(got[start:], "\n--outer\n")
	dec, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(got[start:end])))
	if err != nil || string(dec) != long {
		t.Errorf("decoded %q %v", dec, err)
	}
	if !strings.Contains(got, "Content-Transfer-Encoding: quoted-printable\n\nx=FFy\n--in ner--\n") {
		t.Errorf("folded CTE header part:\n%s", got)
	}
	// The epilogue is outside any part: passed through.
	if !strings.Contains(got, "epilogue \xff") {
		t.Errorf("epilogue changed:\n%s", got)
	}
	// A message without MIME structure and undeclared 8-bit is left alone.
	plain := "Subject: x\n\nbl\xe4h\n"
	if got, conv := downgrade(t, plain); conv || got != plain {
		t.Errorf("plain: %q %v", got, conv)
	}
	// base64 parts are not touched.
	b64 := "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGk=\n"
	if got, conv := downgrade(t, b64); conv || got != b64 {
		t.Errorf("base64: %q", got)
	}
}

// FuzzDowngrade: any message converts without a panic; a message with
// nothing declared 8bit comes out unchanged; converted output is 7-bit
// outside headers and never has a line over 76 characters in a converted
// part.
func FuzzDowngrade(f *testing.F) {
	f.Add("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: 8bit\n\n\xe4\n--b--\n")
	f.Add("Content-Type: message/rfc822\n\nContent-Transfer-Encoding: binary\n\n\xff\xfe\n")
	f.Add("Subject: x\n\nplain\n")
	f.Fuzz(func(t *testing.T, msg string) {
		out := &collect{}
		d := newDowngrader(out)
		if err := copyLines(d, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
		if err := d.finish(); err != nil {
			t.Fatal(err)
		}
		if !d.converted {
			in := &collect{}
			copyLines(in, strings.NewReader(msg))
			if strings.Join(in.lines, "\n") != strings.Join(out.lines, "\n") {
				t.Fatalf("unconverted message changed:\n%q\n%q", in.lines, out.lines)
			}
		}
	})
}

package smtptest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/smtpserver"
)

// fakeServer answers a fixed conversation: a banner, then one canned
// reply per command line, with "354" after DATA and "250 queued" after
// the final ".".
func fakeServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("220 fake.example ESMTP\r\n"))
				inData := false
				var body []string
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					if inData {
						if line == "." {
							inData = false
							c.Write([]byte("250 2.0.0 Ok: queued as X " + strings.Join(body, "|") + "\r\n"))
							body = nil
						} else {
							body = append(body, line)
						}
						continue
					}
					switch strings.ToUpper(strings.Fields(line + " x")[0]) {
					case "EHLO":
						c.Write([]byte("250-fake.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
					case "DATA":
						inData = true
						c.Write([]byte("354 End data with <CR><LF>.<CR><LF>\r\n"))
					case "QUIT":
						c.Write([]byte("221 2.0.0 Bye\r\n"))
						return
					case "BYE":
						c.Write([]byte("421 4.7.0 fake.example Error: closing\r\n"))
						return
					default:
						c.Write([]byte("250 2.1.0 Ok\r\n"))
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

func TestConn(t *testing.T) {
	c := Dial(t, fakeServer(t))
	if got := c.Banner().String(); got != "220 fake.example ESMTP" {
		t.Errorf("banner %q", got)
	}
	r := c.Cmd("EHLO me")
	if r.Code != 250 || len(r.Lines) != 3 || r.Lines[1] != "PIPELINING" || r.String() != "250-fake.example\n250-PIPELINING\n250 8BITMIME" {
		t.Errorf("EHLO reply %+v", r)
	}
	rs := c.Pipeline("MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA")
	if rs[0].Code != 250 || rs[1].Code != 250 || rs[2].Code != 354 {
		t.Errorf("pipelined replies %+v", rs)
	}
	if r := c.Data("Subject: x\n\n.hidden\nbody"); r.Text() != "2.0.0 Ok: queued as X Subject: x||..hidden|body" {
		t.Errorf("data reply %q (dot-stuffing)", r.Text())
	}
	if r := c.Cmd("BYE"); !r.Closed || r.Code != 421 {
		t.Errorf("421 does not mark the connection closed: %+v", r)
	}
	if r := c.Cmd("NOOP"); !r.Closed || r.Code != 0 {
		t.Errorf("command after close: %+v", r)
	}
}

func TestScript(t *testing.T) {
	addr := fakeServer(t)
	Script(t, addr, `
S: 220 fake.example
C: EHLO me
S: 250 8BITMIME
C: MAIL FROM:<a@b>
S: 250 2.1.0
C: RCPT TO:<c@d>
S: 250
C: DATA
S: 354
B: Subject: x
B:
B: hello
S: 250 2.0.0 Ok: queued
C: QUIT
S: 221 2.0.0 Bye
`)
	// A wrong expectation is reported.
	ft := &fakeT{TB: t}
	Script(ft, addr, "S: 220\nC: NOOP\nS: 550 nope\n")
	if len(ft.errs) != 1 || !strings.Contains(ft.errs[0], `got "250 2.1.0 Ok", want "550 nope"`) {
		t.Errorf("mismatch not reported: %q", ft.errs)
	}
}

type fakeT struct {
	testing.TB
	errs []string
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.errs = append(f.errs, strings.TrimSpace(strings.ReplaceAll(sprintf(format, args...), "\n", " ")))
}

func (f *fakeT) Helper() {}

func TestReadReplyErrors(t *testing.T) {
	for in, want := range map[string]string{
		"250-a\r\n251 b\r\n": "code changed",
		"25\r\n":             "malformed",
		"abc def\r\n":        "malformed",
		"250-a\r\n":          "incomplete",
		"":                   "connection closed",
	} {
		_, err := ReadReply(bufio.NewReader(strings.NewReader(in)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

func TestHandoff(t *testing.T) {
	var h Handoff
	ctx := context.Background()
	env := &smtpserver.Envelope{Sender: "a@b", Recipients: []smtpserver.Recipient{{Addr: "c@d"}}}
	m, err := h.Open(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	m.Write([]byte("Subject: x\r\n\r\nhi\r\n"))
	if len(h.Messages()) != 0 {
		t.Errorf("uncommitted message listed")
	}
	if err := m.Commit(ctx, env); err != nil {
		t.Fatal(err)
	}
	got := h.Messages()
	if len(got) != 1 || got[0].ID() != "TEST000001" || string(got[0].Data) != "Subject: x\r\n\r\nhi\r\n" {
		t.Errorf("messages %+v", got)
	}
	h.FailCommit = errors.New("disk full")
	m2, _ := h.Open(ctx, env)
	if err := m2.Commit(ctx, env); err == nil {
		t.Errorf("FailCommit ignored")
	}
	m2.Abort()
	if len(h.Messages()) != 1 {
		t.Errorf("failed message listed")
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

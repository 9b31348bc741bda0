package smtpserver

import (
	"bytes"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// bufConn is a net.Conn over fixed input, for fuzzing the engine without
// sockets: reads drain in, writes collect in out.
type bufConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *bufConn) Read(p []byte) (int, error) {
	// Small reads exercise the line reassembly.
	if len(p) > 7 {
		p = p[:7]
	}
	return c.in.Read(p)
}
func (c *bufConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *bufConn) Close() error                     { return nil }
func (c *bufConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (c *bufConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000} }
func (c *bufConn) SetDeadline(time.Time) error      { return nil }
func (c *bufConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bufConn) SetWriteDeadline(time.Time) error { return nil }

var replyLineRe = regexp.MustCompile(`^[2-5][0-9][0-9]([ -].*)?$`)

func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=NEVER ORCPT=rfc822;c+40d\r\nDATA\r\nhi\r\n..x\r\n.\r\nQUIT\r\n",
		"HELO x\nMAIL FROM:<\"a b\"@c> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<x>\r\nBDAT 3 LAST\r\nabcQUIT\r\n",
		"XCLIENT ADDR=1.2.3.4\r\nXFORWARD NAME=x\r\nVRFY x\r\nETRN x\r\nAUTH PLAIN\r\nSTARTTLS\r\n\r\nSubject: x\r\n",
		"MAIL FROM:<a@b> ENVID=+ RET=FULL\r\nRCPT TO:<postmaster>\r\nDATA\r\n\n.\n\r.\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h := &memHandoff{}
		srv, err := New(Config{Hostname: "mx.test", Handoff: h, ErrorSleepTime: -1, MessageSizeLimit: 1000, RecipientLimit: 3,
			XClientHosts: nil})
		if err != nil {
			t.Fatal(err)
		}
		c := &bufConn{in: bytes.NewReader(in)}
		s := newSession(srv, c)
		s.run()
		out := c.out.String()
		if !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("output does not end in CRLF: %q", out)
		}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if !replyLineRe.MatchString(l) || strings.ContainsAny(l, "\r\n") {
				t.Fatalf("malformed reply line %q in %q", l, out)
			}
		}
		_ = io.EOF
	})
}

func FuzzXClient(f *testing.F) {
	for _, s := range []string{"NAME=x.example ADDR=192.0.2.1 PORT=25 PROTO=ESMTP HELO=h LOGIN=u",
		"ADDR=IPV6:2001:db8::1 NAME=[UNAVAILABLE]", "FOO=bar", "NAME=a+2Bb", "ADDR=+ZZ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		attrs, reply := parseXAttrs("XCLIENT", arg, xclientNames, families{})
		if reply != "" {
			if !strings.HasPrefix(reply, "501 5.5.4 ") || strings.ContainsAny(reply, "\r\n") {
				t.Fatalf("bad reply %q", reply)
			}
			return
		}
		for _, a := range attrs {
			if !xclientNames[a.name] {
				t.Fatalf("unknown attribute %q accepted", a.name)
			}
			if a.name == "ADDR" && a.value != xUnavailable && a.value != xTempUnavail {
				if _, ok := parseXAddr(a.value); !ok {
					t.Fatalf("bad ADDR %q accepted", a.value)
				}
			}
		}
	})
}

package smtpclient_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"mime/quotedprintable"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/smtpclient"
	"github.com/postkit-mail/postkit/smtpserver"
)

func dial(t *testing.T, addr string, opts smtpclient.Options) *smtpclient.Client {
	t.Helper()
	ctx := context.Background()
	if opts.LocalName == "" {
		opts.LocalName = "client.test"
	}
	c, err := smtpclient.Dial(ctx, "tcp", addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// A transaction with DSN parameters, per-recipient rejections and a body
// that needs dot-stuffing, against postkit's own server.
func TestSendToSmtpserver(t *testing.T) {
	p := startPeer(t, func(c *smtpserver.Config) { c.MessageSizeLimit = 100000 })
	c := dial(t, p.addr, smtpclient.Options{})
	ext := c.Extensions()
	if !ext.Pipelining || !ext.EightBitMIME || !ext.DSN || !ext.SMTPUTF8 || !ext.EnhancedStatusCodes || ext.SizeLimit != 100000 {
		t.Fatalf("extensions: %+v", ext)
	}
	if got := c.ServerName(); got != "mx.peer.test" {
		t.Errorf("server name %q", got)
	}
	body := "Subject: test\n\n.leading dot\n..two dots\nbare LF line\r\nlast line without newline"
	env := &smtpclient.Envelope{
		From: "sender@example.org", Size: int64(len(body)), Body: "8BITMIME",
		Ret: "HDRS", EnvID: "id+1=x",
		Rcpts: []smtpclient.Rcpt{
			{Addr: "a@example.com", Notify: []string{"SUCCESS", "FAILURE"}, ORCPT: "rfc822;A@example.com"},
			{Addr: "unknown@example.com"},
			{Addr: "later@example.com"},
		},
	}
	res, err := c.Send(context.Background(), env, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mail.Code != 250 || res.Rcpt[0].Code != 250 {
		t.Fatalf("MAIL %v RCPT %v", res.Mail, res.Rcpt[0])
	}
	if r := res.Rcpt[1]; r.Code != 550 || r.Enhanced != "5.1.1" || !strings.Contains(r.String(), "User unknown") {
		t.Errorf("unknown: %v", r)
	}
	if r := res.Rcpt[2]; r.Code != 450 || r.DSN() != "4.2.1" {
		t.Errorf("later: %v", r)
	}
	if res.Data.Code != 354 || res.Final[0].Code != 250 || res.Final[1].Code != 0 || res.Final[2].Code != 0 {
		t.Errorf("DATA %v final %v", res.Data, res.Final)
	}
	if !strings.Contains(res.Final[0].String(), "queued as Q1") {
		t.Errorf("final %q", res.Final[0])
	}
	msgs := p.h.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	want := "Subject: test\r\n\r\n.leading dot\r\n..two dots\r\nbare LF line\r\nlast line without newline\r\n"
	if got := m.body(); got != want {
		t.Errorf("body\n got %q\nwant %q", got, want)
	}
	e := m.env
	if e.Sender != "sender@example.org" || e.Body != "8BITMIME" || e.Ret != "HDRS" || e.EnvID != "id+1=x" || e.Size != int64(len(body)) {
		t.Errorf("envelope %+v", e)
	}
	if len(e.Recipients) != 1 || e.Recipients[0].ORCPT != "rfc822;A@example.com" || strings.Join(e.Recipients[0].Notify, ",") != "SUCCESS,FAILURE" {
		t.Errorf("recipients %+v", e.Recipients)
	}

	// The session is reusable after RSET.
	if err := c.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err = c.Send(context.Background(), &smtpclient.Envelope{Rcpts: []smtpclient.Rcpt{{Addr: `"john doe"@example.com`}}}, strings.NewReader("x\r\n"))
	if err != nil || res.Final[0].Code != 250 {
		t.Fatalf("second transaction: %v %+v", err, res)
	}
	if got := p.h.messages()[1].env; got.Sender != "" || got.Recipients[0].Addr != `"john doe"@example.com` && got.Recipients[0].Addr != "john doe@example.com" {
		t.Errorf("second envelope %+v", got)
	}
	if c.Transactions() != 2 {
		t.Errorf("transactions %d", c.Transactions())
	}
	// Too big for the server's SIZE: refused before MAIL.
	_, err = c.Send(context.Background(), &smtpclient.Envelope{Size: 200000, Rcpts: []smtpclient.Rcpt{{Addr: "a@example.com"}}}, strings.NewReader("x\r\n"))
	var se *smtpclient.SizeError
	if !errors.As(err, &se) || se.Limit != 100000 {
		t.Errorf("size: %v", err)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("quit: %v", err)
	}
}

// LMTP: LHLO and one reply per accepted recipient after the message.
func TestLMTP(t *testing.T) {
	p := startPeer(t, func(c *smtpserver.Config) { c.Role = smtpserver.RoleLMTP })
	c := dial(t, p.addr, smtpclient.Options{LMTP: true})
	env := &smtpclient.Envelope{From: "s@example.org", Rcpts: []smtpclient.Rcpt{
		{Addr: "a@example.com"}, {Addr: "unknown@example.com"}, {Addr: "full@example.com"}, {Addr: "b@example.com"},
	}}
	res, err := c.Send(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	codes := []int{res.Final[0].Code, res.Final[1].Code, res.Final[2].Code, res.Final[3].Code}
	if codes[0] != 250 || codes[1] != 0 || codes[2] != 452 || codes[3] != 250 {
		t.Errorf("final codes %v (%v)", codes, res.Final)
	}
	if res.Final[2].DSN() != "4.2.2" {
		t.Errorf("full: %v", res.Final[2])
	}
	// An SMTP client at an LMTP server: EHLO is refused, and so is HELO.
	sc, err := smtpclient.Dial(context.Background(), "tcp", p.addr, smtpclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var re *smtpclient.ReplyError
	if err := sc.Hello(context.Background()); !errors.As(err, &re) || re.Command != "HELO command" {
		t.Errorf("EHLO to LMTP: %v", err)
	}
}

func TestStartTLSAndAuth(t *testing.T) {
	p := startPeer(t, func(c *smtpserver.Config) {
		withTLS(t)(c)
		c.Auth = userPass{"joe", "secret"}
		c.TLSAuthOnly = true
	})
	ctx := context.Background()
	c := dial(t, p.addr, smtpclient.Options{})
	if !c.Extensions().StartTLS || len(c.Extensions().Auth) != 0 {
		t.Fatalf("before TLS: %+v", c.Extensions())
	}
	// Verification against the wrong name fails the handshake.
	bad, err := smtpclient.Dial(ctx, "tcp", p.addr, smtpclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bad.Hello(ctx)
	var te *smtpclient.TLSError
	if err := bad.StartTLS(ctx, &tls.Config{RootCAs: p.roots, ServerName: "other.test"}); !errors.As(err, &te) {
		t.Errorf("wrong name: %v", err)
	}
	if err := c.StartTLS(ctx, &tls.Config{RootCAs: p.roots, ServerName: "mx.peer.test"}); err != nil {
		t.Fatal(err)
	}
	if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
		t.Fatal("no TLS state")
	}
	ext := c.Extensions()
	if ext.StartTLS || strings.Join(ext.Auth, " ") != "PLAIN LOGIN" {
		t.Fatalf("after TLS: %+v", ext)
	}
	var re *smtpclient.ReplyError
	if err := c.Auth(ctx, smtpclient.Plain("", "joe", "wrong")); !errors.As(err, &re) || re.Reply.Code != 535 {
		t.Errorf("bad password: %v", err)
	}
	if err := c.Auth(ctx, smtpclient.Login("joe", "secret")); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	if c.AuthUser() != "joe" {
		t.Errorf("user %q", c.AuthUser())
	}
	c2 := dial(t, p.addr, smtpclient.Options{})
	if err := c2.StartTLS(ctx, &tls.Config{RootCAs: p.roots, ServerName: "mx.peer.test"}); err != nil {
		t.Fatal(err)
	}
	if err := c2.Auth(ctx, smtpclient.Plain("", "joe", "secret")); err != nil {
		t.Fatalf("PLAIN: %v", err)
	}
	res, err := c2.Send(ctx, &smtpclient.Envelope{From: "joe@example.org", Rcpts: []smtpclient.Rcpt{{Addr: "x@example.com"}}}, strings.NewReader("hi\r\n"))
	if err != nil || res.Final[0].Code != 250 {
		t.Fatalf("send after auth: %v %+v", err, res)
	}
	if s := p.h.messages()[0].env.Session; s == nil || s.SASLUsername != "joe" {
		t.Errorf("server saw no login: %+v", s)
	}
}

// Postfix's smtp-sink in its failure modes.
func TestAgainstSmtpSink(t *testing.T) {
	ctx := context.Background()
	env := func(rcpts ...string) *smtpclient.Envelope {
		e := &smtpclient.Envelope{From: "s@example.org"}
		for _, r := range rcpts {
			e.Rcpts = append(e.Rcpts, smtpclient.Rcpt{Addr: r})
		}
		return e
	}
	t.Run("rcpt-hard", func(t *testing.T) {
		s := startSink(t, "-f", "RCPT")
		c := dial(t, s.addr, smtpclient.Options{})
		res, err := c.Send(ctx, env("a@x.test", "b@x.test"), strings.NewReader("hi\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Rcpt[0].String() != "500 5.3.0 Error: command failed" || res.Data.Code == 354 {
			t.Errorf("%+v", res)
		}
		if err := c.Reset(ctx); err != nil {
			t.Errorf("RSET after failure: %v", err)
		}
	})
	t.Run("mail-soft", func(t *testing.T) {
		s := startSink(t, "-r", "MAIL")
		c := dial(t, s.addr, smtpclient.Options{})
		if c.Extensions().Pipelining {
			t.Error("-r implies no PIPELINING")
		}
		res, err := c.Send(ctx, env("a@x.test"), strings.NewReader("hi\r\n"))
		if err != nil || res.Mail.String() != "450 4.3.0 Error: command failed" || res.Rcpt[0].Code != 0 {
			t.Errorf("%v %+v", err, res)
		}
	})
	t.Run("ehlo-refused", func(t *testing.T) {
		s := startSink(t, "-f", "EHLO")
		c := dial(t, s.addr, smtpclient.Options{})
		if c.HelloReply().Code != 250 || c.Extensions().Pipelining {
			t.Errorf("HELO fallback: %v %+v", c.HelloReply(), c.Extensions())
		}
		res, err := c.Send(ctx, env("a@x.test"), strings.NewReader("hi\r\n"))
		if err != nil || res.Final[0].Code != 250 {
			t.Errorf("%v %+v", err, res)
		}
	})
	t.Run("disconnect-at-data", func(t *testing.T) {
		s := startSink(t, "-q", "DATA")
		c := dial(t, s.addr, smtpclient.Options{})
		res, err := c.Send(ctx, env("a@x.test"), strings.NewReader("hi\r\n"))
		var ce *smtpclient.Error
		if !errors.As(err, &ce) || ce.Stage != "sending DATA command" || ce.Timeout() {
			t.Errorf("%v", err)
		}
		if res.Rcpt[0].Code != 250 || c.Broken() == nil {
			t.Errorf("%+v broken=%v", res, c.Broken())
		}
	})
	t.Run("421-at-dot", func(t *testing.T) {
		s := startSink(t, "-Q", ".")
		c := dial(t, s.addr, smtpclient.Options{})
		res, err := c.Send(ctx, env("a@x.test"), strings.NewReader("hi\r\n"))
		if err != nil || res.Final[0].Code != 421 {
			t.Errorf("%v %+v", err, res)
		}
	})
	t.Run("lmtp", func(t *testing.T) {
		s := startSink(t, "-L")
		c := dial(t, s.addr, smtpclient.Options{LMTP: true})
		res, err := c.Send(ctx, env("a@x.test", "b@x.test"), strings.NewReader("hi\r\n"))
		if err != nil || res.Final[0].Code != 250 || res.Final[1].Code != 250 {
			t.Errorf("%v %+v", err, res)
		}
	})
	t.Run("8bit-downgrade", func(t *testing.T) {
		s := startSink(t, "-8")
		c := dial(t, s.addr, smtpclient.Options{})
		if c.Extensions().EightBitMIME {
			t.Fatal("8BITMIME offered with -8")
		}
		msg := "MIME-Version: 1.0\r\nSubject: caf\xc3\xa9\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nsch\xc3\xb6n = gut \r\n.\r\n--b1\r\n" +
			"Content-Type: text/plain\r\n\r\nplain ascii\r\n--b1--\r\n"
		e := env("a@x.test")
		e.Body = "8BITMIME"
		res, err := c.Send(ctx, e, strings.NewReader(msg))
		if err != nil || res.Final[0].Code != 250 || !res.Downgraded {
			t.Fatalf("%v %+v", err, res)
		}
		dumps := s.dumps(t)
		if len(dumps) != 1 {
			t.Fatalf("%d dumps", len(dumps))
		}
		got := dumps[0] // smtp-sink writes LF line ends
		if strings.Contains(got, "BODY=8BITMIME") {
			t.Error("BODY=8BITMIME sent to a server without 8BITMIME")
		}
		if !strings.Contains(got, "Content-Transfer-Encoding: quoted-printable\n\nsch=C3=B6n =3D gut=20\n.\n--b1") {
			t.Errorf("not converted:\n%s", got)
		}
		// Headers keep their 8-bit bytes (Postfix converts bodies only).
		if !strings.Contains(got, "Subject: caf\xc3\xa9\n") || !strings.Contains(got, "plain ascii") {
			t.Errorf("dump:\n%s", got)
		}
		i := strings.Index(got, "sch=C3")
		dec, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(got[i : i+strings.Index(got[i:], "--b1")])))
		if err != nil || string(dec) != "sch\xc3\xb6n = gut \n.\n" {
			t.Errorf("decoded %q %v", dec, err)
		}
	})
}

// A server that accepts the connection but never greets: the greeting
// timeout ends the wait, in Postfix's words.
func TestGreetingTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			time.Sleep(3 * time.Second)
			c.Close()
		}
	}()
	_, err = smtpclient.Dial(context.Background(), "tcp", ln.Addr().String(), smtpclient.Options{Timeouts: smtpclient.Timeouts{Greeting: 200 * time.Millisecond}})
	var ce *smtpclient.Error
	if !errors.As(err, &ce) || !ce.Timeout() || ce.Stage != "receiving the initial server greeting" {
		t.Fatalf("%v", err)
	}
}

// Lines over smtp_line_length_limit are broken with CRLF SPACE.
func TestLineLengthLimit(t *testing.T) {
	p := startPeer(t, func(c *smtpserver.Config) { c.LineLengthLimit = 5000 })
	c := dial(t, p.addr, smtpclient.Options{LineLengthLimit: 10})
	long := strings.Repeat("0123456789", 2) + "abc"
	_, err := c.Send(context.Background(), &smtpclient.Envelope{Rcpts: []smtpclient.Rcpt{{Addr: "a@example.com"}}}, strings.NewReader("Subject: x\r\n\r\n"+long+"\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: x\r\n\r\n0123456789\r\n 0123456789\r\n abc\r\n"
	if got := p.h.messages()[0].body(); got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

// A cancelled context ends a stalled conversation at once.
func TestContextCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("220 hi\r\n"))
			io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := smtpclient.Dial(ctx, "tcp", ln.Addr().String(), smtpclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if err := c.Hello(ctx); err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

var _ = bytes.NewReader

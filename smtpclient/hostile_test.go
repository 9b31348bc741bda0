package smtpclient_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/smtpclient"
)

// scripted runs a hand-written server on loopback: serve gets the
// connection after the greeting "220 scripted ESMTP" was sent.
func scripted(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("220 scripted ESMTP\r\n"))
		serve(c, bufio.NewReader(c))
	}()
	return ln.Addr().String()
}

// expect reads one command line and fails the test when it does not start
// with prefix.
func expect(t *testing.T, br *bufio.Reader, prefix string) string {
	l, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, prefix) {
		t.Errorf("server read %q, %v; want %q", l, err, prefix)
	}
	return l
}

// cancelReader cancels a context when it is first read, then gives its
// text: the delivery is cancelled while the body is being sent.
type cancelReader struct {
	cancel context.CancelFunc
	r      io.Reader
}

func (c *cancelReader) Read(p []byte) (int, error) {
	c.cancel()
	time.Sleep(50 * time.Millisecond) // let context.AfterFunc run
	return c.r.Read(p)
}

// A context cancelled while the body is sent ends the wait for the reply
// to the end of data at once, not after smtp_data_done_timeout: later
// stages must not lift the cancellation by setting fresh deadlines.
func TestContextCancelDuringBody(t *testing.T) {
	release := make(chan struct{})
	addr := scripted(t, func(c net.Conn, br *bufio.Reader) {
		expect(t, br, "EHLO")
		c.Write([]byte("250-scripted\r\n250 PIPELINING\r\n"))
		expect(t, br, "MAIL FROM")
		expect(t, br, "RCPT TO")
		expect(t, br, "DATA")
		c.Write([]byte("250 ok\r\n250 ok\r\n354 go\r\n"))
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == ".\r\n" {
				break
			}
		}
		<-release // never answers the end of data
	})
	defer close(release)
	c, err := smtpclient.Dial(context.Background(), "tcp", addr, smtpclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, &smtpclient.Envelope{Rcpts: []smtpclient.Rcpt{{Addr: "a@example.com"}}},
			&cancelReader{cancel: cancel, r: strings.NewReader("Subject: x\r\n\r\nbody\r\n")})
		errc <- err
	}()
	select {
	case err := <-errc:
		var ce *smtpclient.Error
		if !errors.As(err, &ce) {
			t.Fatalf("Send after cancel: %v, want an *Error", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
	case <-time.After(10 * time.Second):
		c.Conn().Close()
		<-errc
		t.Fatal("Send still waiting 10s after its context was cancelled")
	}
}

// A context cancelled before Send starts: Send gives up without waiting
// for a server that never answers (whichever of the cancellation and the
// first deadline comes first).
func TestContextCancelledBeforeSend(t *testing.T) {
	for i := 0; i < 5; i++ {
		release := make(chan struct{})
		addr := scripted(t, func(c net.Conn, br *bufio.Reader) {
			expect(t, br, "EHLO")
			c.Write([]byte("250-scripted\r\n250 PIPELINING\r\n"))
			io.Copy(io.Discard, br)
			<-release
		})
		c, err := smtpclient.Dial(context.Background(), "tcp", addr, smtpclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		errc := make(chan error, 1)
		go func() {
			_, err := c.Send(ctx, &smtpclient.Envelope{Rcpts: []smtpclient.Rcpt{{Addr: "a@example.com"}}}, strings.NewReader("x\r\n"))
			errc <- err
		}()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("Send with a cancelled context succeeded")
			}
		case <-time.After(10 * time.Second):
			c.Conn().Close()
			<-errc
			t.Errorf("round %d: Send with a cancelled context still waiting after 10s", i)
		}
		c.Close()
		close(release)
	}
}

// The body on the wire: dot-stuffing of every line that starts with a
// dot, the last line without a line end, bare LF made CRLF; and pipelined
// replies that are multi-line or refuse MAIL keep the count of replies
// right.
func TestWireBodyAndPipelinedReplies(t *testing.T) {
	got := make(chan string, 1)
	addr := scripted(t, func(c net.Conn, br *bufio.Reader) {
		expect(t, br, "EHLO")
		c.Write([]byte("250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
		// First transaction: MAIL refused, the RCPTs and DATA get 503.
		expect(t, br, "MAIL FROM:<bad@example.org>")
		expect(t, br, "RCPT TO:<a@example.com>")
		expect(t, br, "RCPT TO:<b@example.com>")
		expect(t, br, "DATA")
		c.Write([]byte("550-5.7.1 sender\r\n550 5.7.1 refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n"))
		expect(t, br, "RSET")
		c.Write([]byte("250 2.0.0 ok\r\n"))
		// Second: multi-line replies, one RCPT refused.
		expect(t, br, "MAIL FROM:<s@example.org>")
		expect(t, br, "RCPT TO:<a@example.com>")
		expect(t, br, "RCPT TO:<b@example.com>")
		expect(t, br, "DATA")
		c.Write([]byte("250-2.1.0 sender\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go\r\n"))
		var body strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				break
			}
			if l == ".\r\n" {
				break
			}
			body.WriteString(l)
		}
		got <- body.String()
		c.Write([]byte("250-2.0.0 queued\r\n250 2.0.0 as X\r\n"))
		expect(t, br, "QUIT")
		c.Write([]byte("221 bye\r\n"))
	})
	ctx := context.Background()
	c, err := smtpclient.Dial(ctx, "tcp", addr, smtpclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	rcpts := []smtpclient.Rcpt{{Addr: "a@example.com"}, {Addr: "b@example.com"}}
	res, err := c.Send(ctx, &smtpclient.Envelope{From: "bad@example.org", Rcpts: rcpts}, strings.NewReader("x\r\n"))
	if err != nil || res.Mail.Code != 550 || res.Mail.String() != "550-5.7.1 sender 550 5.7.1 refused" ||
		res.Rcpt[0].Code != 503 || res.Rcpt[1].Code != 503 || res.Data.Code != 503 || res.Final[0].Code != 0 {
		t.Fatalf("refused MAIL: %+v, %v", res, err)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatalf("RSET after the refused transaction: %v", err)
	}
	msg := "Subject: s\n\n.\n..x\nbare\rcr\n.last"
	res, err = c.Send(ctx, &smtpclient.Envelope{From: "s@example.org", Rcpts: rcpts}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if res.Rcpt[0].Code != 250 || res.Rcpt[1].String() != "550-5.1.1 no 550 5.1.1 such user" ||
		res.Final[0].String() != "250-2.0.0 queued 250 2.0.0 as X" || res.Final[1].Code != 0 {
		t.Errorf("replies %+v", res)
	}
	if want := "Subject: s\r\n\r\n..\r\n...x\r\nbare\rcr\r\n..last\r\n"; <-got != want {
		t.Errorf("wire body differs, want %q", want)
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// A message that cannot be read part-way leaves the session broken (the
// server is inside DATA), so nobody sends QUIT or RSET into the body.
func TestBodyErrorBreaksSession(t *testing.T) {
	addr := scripted(t, func(c net.Conn, br *bufio.Reader) {
		expect(t, br, "EHLO")
		c.Write([]byte("250-scripted\r\n250 PIPELINING\r\n"))
		expect(t, br, "MAIL FROM")
		expect(t, br, "RCPT TO")
		expect(t, br, "DATA")
		c.Write([]byte("250 ok\r\n250 ok\r\n354 go\r\n"))
		io.Copy(io.Discard, br)
	})
	ctx := context.Background()
	c, err := smtpclient.Dial(ctx, "tcp", addr, smtpclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Send(ctx, &smtpclient.Envelope{Rcpts: []smtpclient.Rcpt{{Addr: "a@example.com"}}}, failingReader{})
	var be *smtpclient.BodyError
	if !errors.As(err, &be) {
		t.Fatalf("Send: %v, want a *BodyError", err)
	}
	if c.Broken() == nil {
		t.Error("the session is still usable after the body failed inside DATA")
	}
}

package smtp_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/mda/smtp"
	"github.com/postkit-mail/postkit/queue"
)

// refuseThenDrop serves SMTP on addr: RCPT TO for a local part starting
// with "later" gets 450, "never" 550, others 250; after the message's
// final dot the connection is dropped without a reply, or, with stall,
// left open without one.
func refuseThenDrop(t *testing.T, addr string, stall bool) {
	refuseThenDropAs(t, addr, stall, "drop.test")
}

// refuseThenDropAs is refuseThenDrop with the name the server gives in
// its EHLO reply.
func refuseThenDropAs(t *testing.T, addr string, stall bool, ehloName string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serve := func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		c.Write([]byte("220 drop.test ESMTP\r\n"))
		inData := false
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if inData {
				if l == ".\r\n" {
					if stall {
						io.Copy(io.Discard, br)
					}
					return
				}
				continue
			}
			cmd := strings.ToUpper(strings.TrimSpace(l))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				c.Write([]byte("250-" + ehloName + "\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"))
			case strings.HasPrefix(cmd, "RCPT TO:<LATER"):
				c.Write([]byte("450 4.2.1 try later\r\n"))
			case strings.HasPrefix(cmd, "RCPT TO:<MULTI"):
				c.Write([]byte("550-5.1.1 first line\r\n550-second line\r\n550 5.1.1 third line\r\n"))
			case strings.HasPrefix(cmd, "RCPT TO:<ODD"):
				c.Write([]byte("550 4.7.1 class differs from the code\r\n"))
			case strings.HasPrefix(cmd, "RCPT TO:<BARE"):
				c.Write([]byte("452\r\n"))
			case strings.HasPrefix(cmd, "RCPT TO:<NEVER"):
				c.Write([]byte("550 5.1.1 no such user\r\n"))
			case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"), cmd == "RSET":
				c.Write([]byte("250 2.0.0 ok\r\n"))
			case cmd == "DATA":
				inData = true
				c.Write([]byte("354 go ahead\r\n"))
			case cmd == "QUIT":
				c.Write([]byte("221 2.0.0 bye\r\n"))
				return
			default:
				c.Write([]byte("502 5.5.2 what\r\n"))
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serve(c) }()
		}
	}()
}

// A connection lost after the final dot, in a transaction where some
// recipients were refused at RCPT TO (4xx, 5xx, a multi-line reply, an
// enhanced code whose class differs from the reply's, a bare code):
// Postfix 3.7 reports those with the server's replies and only the
// accepted one as lost; so does the agent, in the same words and codes.
func TestPostfixLostAfterRcptRepliesOracle(t *testing.T) {
	for _, stall := range []bool{false, true} {
		t.Run(map[bool]string{false: "lost", true: "timeout"}[stall], func(t *testing.T) { lostAfterRcptReplies(t, stall) })
	}
}

// lostAfterRcptReplies runs TestPostfixLostAfterRcptRepliesOracle with a
// server that drops the connection after the dot, or (stall) one that
// never answers it (smtp_data_done_timeout = 1s).
func lostAfterRcptReplies(t *testing.T, stall bool) {
	oracle.Require(t, "postfix")
	pfPort, ourPort := freePort(t, "127.0.0.2"), freePort(t, "127.0.0.3")
	refuseThenDrop(t, fmt.Sprintf("127.0.0.2:%d", pfPort), stall)
	refuseThenDrop(t, fmt.Sprintf("127.0.0.3:%d", ourPort), stall)
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "default_transport = smtp\nrelay_transport = smtp\nsmtp_data_done_timeout = 1s\n" +
			"transport_maps = inline:{drop.test=smtp:[127.0.0.2]:" + fmt.Sprint(pfPort) + "}\n",
	})
	rcpts := []string{"later@drop.test", "never@drop.test", "multi@drop.test", "odd@drop.test", "bare@drop.test", "ok@drop.test"}
	s := p.Session(t)
	cmds := []string{"EHLO client.example", "MAIL FROM:<>"}
	for _, r := range rcpts {
		cmds = append(cmds, "RCPT TO:<"+r+">")
	}
	for _, cmd := range append(cmds, "DATA") {
		if r := s.Cmd(cmd); r.Code >= 400 {
			t.Fatalf("%s: %s", cmd, r)
		}
	}
	if r := s.Message(strings.ReplaceAll(testMsg, "\r\n", "\n")); r.Code != 250 {
		t.Fatal(r)
	}
	s.Close()

	cfg, err := config.Load(p.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := smtp.FromConfig(context.Background(), cfg, "smtp", smtp.Options{Resolver: newWorld(t).res})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	res := a.Deliver(context.Background(), delivery(fmt.Sprintf("[127.0.0.3]:%d", ourPort), "", testMsg, rcpts...))
	status := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	for i, rcpt := range rcpts {
		line := p.WaitLog(t, 30*time.Second, "to=<"+rcpt+">", "status=")
		m := logLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsed log line %q", line)
		}
		r := res[i]
		got := fmt.Sprintf("dsn=%s, status=%s (%s)", r.DSN, status[r.Outcome], strings.ReplaceAll(r.Reason, "127.0.0.3", "127.0.0.2"))
		want := fmt.Sprintf("dsn=%s, status=%s (%s)", m[3], m[4], m[5])
		if got != want {
			t.Errorf("%s:\npostkit: %s\npostfix: %s", rcpt, got, want)
		}
	}
}

// lmtpPartial serves LMTP on addr: after the message it answers for the
// first recipient only ("452 4.2.2 Mailbox full") and drops the
// connection.
func lmtpPartial(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serve := func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		c.Write([]byte("220 lmtp.test LMTP\r\n"))
		inData := false
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if inData {
				if l == ".\r\n" {
					c.Write([]byte("452 4.2.2 Mailbox full\r\n"))
					return
				}
				continue
			}
			cmd := strings.ToUpper(strings.TrimSpace(l))
			switch {
			case strings.HasPrefix(cmd, "LHLO"):
				c.Write([]byte("250-lmtp.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"))
			case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"), cmd == "RSET":
				c.Write([]byte("250 2.0.0 ok\r\n"))
			case cmd == "DATA":
				inData = true
				c.Write([]byte("354 go ahead\r\n"))
			case cmd == "QUIT":
				c.Write([]byte("221 2.0.0 bye\r\n"))
				return
			default:
				c.Write([]byte("502 5.5.2 what\r\n"))
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serve(c) }()
		}
	}()
}

// LMTP: the connection is lost after the reply for the first recipient
// (a 4xx); Postfix 3.7's lmtp(8) keeps that reply for it and reports only
// the second as lost, and so does the agent.
func TestPostfixLMTPPartialRepliesOracle(t *testing.T) {
	oracle.Require(t, "postfix")
	pfPort, ourPort := freePort(t, "127.0.0.2"), freePort(t, "127.0.0.3")
	lmtpPartial(t, fmt.Sprintf("127.0.0.2:%d", pfPort))
	lmtpPartial(t, fmt.Sprintf("127.0.0.3:%d", ourPort))
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "default_transport = smtp\nrelay_transport = smtp\n" +
			"transport_maps = inline:{lmtp.test=lmtp:inet:127.0.0.2:" + fmt.Sprint(pfPort) + "}\n",
	})
	rcpts := []string{"first@lmtp.test", "second@lmtp.test"}
	s := p.Session(t)
	cmds := []string{"EHLO client.example", "MAIL FROM:<>"}
	for _, r := range rcpts {
		cmds = append(cmds, "RCPT TO:<"+r+">")
	}
	for _, cmd := range append(cmds, "DATA") {
		if r := s.Cmd(cmd); r.Code >= 400 {
			t.Fatalf("%s: %s", cmd, r)
		}
	}
	if r := s.Message(strings.ReplaceAll(testMsg, "\r\n", "\n")); r.Code != 250 {
		t.Fatal(r)
	}
	s.Close()

	cfg, err := config.Load(p.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := smtp.FromConfig(context.Background(), cfg, "lmtp", smtp.Options{Resolver: newWorld(t).res})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	res := a.Deliver(context.Background(), delivery(fmt.Sprintf("inet:127.0.0.3:%d", ourPort), "", testMsg, rcpts...))
	status := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	for i, rcpt := range rcpts {
		line := p.WaitLog(t, 30*time.Second, "to=<"+rcpt+">", "status=")
		m := logLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsed log line %q", line)
		}
		r := res[i]
		got := fmt.Sprintf("dsn=%s, status=%s (%s)", r.DSN, status[r.Outcome], strings.ReplaceAll(r.Reason, "127.0.0.3", "127.0.0.2"))
		want := fmt.Sprintf("dsn=%s, status=%s (%s)", m[3], m[4], m[5])
		if got != want {
			t.Errorf("%s:\npostkit: %s\npostfix: %s", rcpt, got, want)
		}
	}
}

// A server on a port other than 25 that calls itself by our myhostname
// in its EHLO reply (a content filter's re-injection port, say): Postfix
// 3.7 does loop detection on port 25 only, so it goes on with the
// transaction (which this server then drops after the dot), and so must
// the agent rather than bounce with "loops back to myself".
func TestPostfixEHLOLoopOracle(t *testing.T) {
	oracle.Require(t, "postfix")
	pfPort, ourPort := freePort(t, "127.0.0.2"), freePort(t, "127.0.0.3")
	refuseThenDropAs(t, fmt.Sprintf("127.0.0.2:%d", pfPort), false, "mx.oracle.test")
	refuseThenDropAs(t, fmt.Sprintf("127.0.0.3:%d", ourPort), false, "mx.oracle.test")
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "default_transport = smtp\nrelay_transport = smtp\n" +
			"transport_maps = inline:{loop.test=smtp:[127.0.0.2]:" + fmt.Sprint(pfPort) + "}\n",
	})
	s := p.Session(t)
	for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<>", "RCPT TO:<u@loop.test>", "DATA"} {
		if r := s.Cmd(cmd); r.Code >= 400 {
			t.Fatalf("%s: %s", cmd, r)
		}
	}
	if r := s.Message(strings.ReplaceAll(testMsg, "\r\n", "\n")); r.Code != 250 {
		t.Fatal(r)
	}
	s.Close()
	line := p.WaitLog(t, 30*time.Second, "to=<u@loop.test>", "status=")
	m := logLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("unparsed log line %q", line)
	}
	cfg, err := config.Load(p.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := smtp.FromConfig(context.Background(), cfg, "smtp", smtp.Options{Resolver: newWorld(t).res})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r := a.Deliver(context.Background(), delivery(fmt.Sprintf("[127.0.0.3]:%d", ourPort), "", testMsg, "u@loop.test"))[0]
	status := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	got := fmt.Sprintf("dsn=%s, status=%s (%s)", r.DSN, status[r.Outcome], strings.ReplaceAll(r.Reason, "127.0.0.3", "127.0.0.2"))
	want := fmt.Sprintf("dsn=%s, status=%s (%s)", m[3], m[4], m[5])
	if got != want {
		t.Errorf("\npostkit: %s\npostfix: %s", got, want)
	}
}

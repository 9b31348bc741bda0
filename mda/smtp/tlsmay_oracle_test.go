package smtp_test

import (
	"bufio"
	"context"
	"fmt"
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

// brokenTLS serves SMTP on addr: it offers STARTTLS and answers it with
// 220 followed by bytes that are no TLS record, so every handshake fails;
// a client that goes on in plaintext gets its message accepted. It
// returns a function that counts the messages accepted in plaintext.
func brokenTLS(t *testing.T, addr string) func() int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	plain := 0
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serve := func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		c.Write([]byte("220 broken.test ESMTP\r\n"))
		inData := false
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if inData {
				if l == ".\r\n" {
					inData = false
					mu.Lock()
					plain++
					mu.Unlock()
					c.Write([]byte("250 2.0.0 accepted in plaintext\r\n"))
				}
				continue
			}
			switch cmd := strings.ToUpper(strings.TrimSpace(l)); {
			case strings.HasPrefix(cmd, "EHLO"):
				c.Write([]byte("250-broken.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"))
			case cmd == "STARTTLS":
				c.Write([]byte("220 2.0.0 Ready to start TLS\r\nthis is not TLS at all\r\n"))
				time.Sleep(100 * time.Millisecond)
				return
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
	return func() int { mu.Lock(); defer mu.Unlock(); return plain }
}

// At smtp_tls_security_level = may, a failed handshake on a message's
// first attempt: Postfix 3.7 defers it (no plaintext retry before
// minimal_backoff_time), and so does the agent, with the same log words.
func TestPostfixTLSMayHandshakeOracle(t *testing.T) {
	oracle.Require(t, "postfix")
	pfPort, ourPort := freePort(t, "127.0.0.2"), freePort(t, "127.0.0.3")
	pfPlain := brokenTLS(t, fmt.Sprintf("127.0.0.2:%d", pfPort))
	ourPlain := brokenTLS(t, fmt.Sprintf("127.0.0.3:%d", ourPort))
	p := oracle.StartPostfix(t, oracle.PostfixOptions{
		Main: "default_transport = smtp\nrelay_transport = smtp\nsmtp_tls_security_level = may\n" +
			"transport_maps = inline:{tls.test=smtp:[127.0.0.2]:" + fmt.Sprint(pfPort) + "}\n",
	})
	s := p.Session(t)
	for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<>", "RCPT TO:<u@tls.test>", "DATA"} {
		if r := s.Cmd(cmd); r.Code >= 400 {
			t.Fatalf("%s: %s", cmd, r)
		}
	}
	if r := s.Message(strings.ReplaceAll(testMsg, "\r\n", "\n")); r.Code != 250 {
		t.Fatal(r)
	}
	s.Close()
	line := p.WaitLog(t, 30*time.Second, "to=<u@tls.test>", "status=")
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
	r := a.Deliver(context.Background(), delivery(fmt.Sprintf("[127.0.0.3]:%d", ourPort), "", testMsg, "u@tls.test"))[0]
	status := map[queue.Outcome]string{queue.Delivered: "sent", queue.Delayed: "deferred", queue.Failed: "bounced"}
	got := fmt.Sprintf("dsn=%s, status=%s (%s)", r.DSN, status[r.Outcome], r.Reason)
	want := fmt.Sprintf("dsn=%s, status=%s (%s)", m[3], m[4], m[5])
	if got != want {
		t.Errorf("\npostkit: %s\npostfix: %s", got, want)
	}
	if pfPlain() != ourPlain() {
		t.Errorf("messages sent in plaintext: Postfix %d, postkit %d", pfPlain(), ourPlain())
	}
	if testing.Verbose() {
		t.Logf("Postfix: %s", line)
	}
}

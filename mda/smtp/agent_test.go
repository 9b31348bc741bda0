package smtp_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/mda/smtp"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/resolver"
	"github.com/postkit-mail/postkit/resolver/dnstest"
	"github.com/postkit-mail/postkit/smtpserver"
)

// zone is the test DNS data: MX routing for several domains onto the
// loopback servers.
const zone = `
$ORIGIN test.
example        MX 10 mx1.example
example        MX 20 mx2.example
mx1.example    A  127.0.0.2
mx2.example    A  127.0.0.3
dead           MX 10 mx-dead.dead
dead           MX 20 mx2.example
mx-dead.dead   A  127.0.0.4
grey           MX 10 mx-grey.grey
grey           MX 20 mx2.example
mx-grey.grey   A  127.0.0.5
equal          MX 10 mx1.example
equal          MX 10 mx2.example
nullmx         MX 0 .
amx            A  127.0.0.2
loop           MX 10 self.loop
self.loop      A  127.0.0.1
backup         MX 5 mx1.example
backup         MX 10 self.loop
noaddr         MX 10 nothing.noaddr
secure         MX 10 mx1.secure
mx1.secure     A  127.0.0.2
`

type world struct {
	port int
	dns  *dnstest.Server
	res  resolver.Resolver
	logs *logBuf
}

func newWorld(t *testing.T) *world {
	w := &world{logs: &logBuf{}}
	w.port = freePort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6")
	w.dns = dnstest.New(t, zone)
	w.res = w.dns.Resolver()
	return w
}

func (w *world) addr(ip string) string { return fmt.Sprintf("%s:%d", ip, w.port) }

func (w *world) agent(t *testing.T, mod func(*smtp.Config), opts ...func(*smtp.Options)) *smtp.Agent {
	cfg := smtp.Config{
		MyHostname: "client.test",
		Port:       w.port,
		OwnAddrs:   []netip.Addr{netip.MustParseAddr("127.0.0.1")},
	}
	if mod != nil {
		mod(&cfg)
	}
	o := smtp.Options{Resolver: w.res, Logger: slogOf(w.logs)}
	for _, f := range opts {
		f(&o)
	}
	a, err := smtp.New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	// The test servers listen on w.port, not 25: loop detection is
	// wanted there (TestPostfixEHLOLoopOracle has Postfix's port rule).
	smtp.SetLoopDetectPort(a, w.port)
	t.Cleanup(func() { a.Close() })
	return a
}

func check(t *testing.T, got queue.Result, outcome queue.Outcome, dsn, reason string) {
	t.Helper()
	if got.Outcome != outcome || got.DSN != dsn || !strings.HasPrefix(got.Reason, reason) {
		t.Errorf("got %v %s %q (relay %s)\nwant %v %s %q", got.Outcome, got.DSN, got.Reason, got.Relay, outcome, dsn, reason)
	}
}

func TestMXRouting(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), nil)
	mx2 := startPeer(t, "tcp", w.addr("127.0.0.3"), nil)
	a := w.agent(t, func(c *smtp.Config) { c.CacheTimeLimit = -1 })
	ctx := context.Background()

	t.Run("preference", func(t *testing.T) {
		r := a.Deliver(ctx, delivery("example.test", "s@example.org", testMsg, "b@example.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 2.0.0 Ok: queued as Q")
		if want := "mx1.example.test[127.0.0.2]:" + fmt.Sprint(w.port); r[0].Relay != want {
			t.Errorf("relay %q want %q", r[0].Relay, want)
		}
		if len(mx1.h.messages()) != 1 || len(mx2.h.messages()) != 0 {
			t.Errorf("mx1 %d mx2 %d", len(mx1.h.messages()), len(mx2.h.messages()))
		}
		if r[0].Conn <= 0 || r[0].Xfer <= 0 {
			t.Errorf("times %v %v", r[0].Conn, r[0].Xfer)
		}
	})
	t.Run("dead-primary", func(t *testing.T) {
		n := len(mx2.h.messages())
		r := a.Deliver(ctx, delivery("dead.test", "s@example.org", testMsg, "b@dead.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
		if len(mx2.h.messages()) != n+1 {
			t.Error("backup did not get the message")
		}
		want := fmt.Sprintf("connect to mx-dead.dead.test[127.0.0.4]:%d: Connection refused", w.port)
		if !strings.Contains(w.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, w.logs)
		}
	})
	t.Run("4xx-greeting", func(t *testing.T) {
		startSink(t, w.addr("127.0.0.5"), "-r", "CONNECT")
		n := len(mx2.h.messages())
		r := a.Deliver(ctx, delivery("grey.test", "s@example.org", testMsg, "b@grey.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
		if len(mx2.h.messages()) != n+1 {
			t.Error("backup did not get the message")
		}
		want := fmt.Sprintf("host mx-grey.grey.test[127.0.0.5] refused to talk to me: 450 4.3.0 Error: command failed")
		if !strings.Contains(w.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, w.logs)
		}
	})
	t.Run("equal-preference-shuffle", func(t *testing.T) {
		n1, n2 := len(mx1.h.messages()), len(mx2.h.messages())
		for range 30 {
			r := a.Deliver(ctx, delivery("equal.test", "s@example.org", testMsg, "b@equal.test"))
			check(t, r[0], queue.Delivered, "2.0.0", "250 ")
		}
		d1, d2 := len(mx1.h.messages())-n1, len(mx2.h.messages())-n2
		if d1+d2 != 30 || d1 == 0 || d2 == 0 {
			t.Errorf("not shuffled: mx1 %d, mx2 %d", d1, d2)
		}
	})
	t.Run("null-mx", func(t *testing.T) {
		r := a.Deliver(ctx, delivery("nullmx.test", "s@example.org", testMsg, "b@nullmx.test"))
		check(t, r[0], queue.Failed, "5.1.0", "Domain nullmx.test does not accept mail (nullMX)")
		if r[0].Relay != "" {
			t.Errorf("relay %q", r[0].Relay)
		}
	})
	t.Run("a-fallback", func(t *testing.T) {
		n := len(mx1.h.messages())
		r := a.Deliver(ctx, delivery("amx.test", "s@example.org", testMsg, "b@amx.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
		if r[0].Relay != w.addr("amx.test[127.0.0.2]") || len(mx1.h.messages()) != n+1 {
			t.Errorf("relay %q", r[0].Relay)
		}
	})
	t.Run("nxdomain", func(t *testing.T) {
		r := a.Deliver(ctx, delivery("nx.test", "s@example.org", testMsg, "b@nx.test"))
		check(t, r[0], queue.Failed, "5.4.4", "Host or domain name not found. Name service error for name=nx.test type=A: Host not found")
	})
	t.Run("no-mx-address", func(t *testing.T) {
		r := a.Deliver(ctx, delivery("noaddr.test", "s@example.org", testMsg, "b@noaddr.test"))
		check(t, r[0], queue.Failed, "5.4.4", "no MX host for noaddr.test has a valid address record")
	})
	t.Run("dns-servfail", func(t *testing.T) {
		w.dns.ServFail("servfail.test")
		r := a.Deliver(ctx, delivery("servfail.test", "s@example.org", testMsg, "b@servfail.test"))
		check(t, r[0], queue.Delayed, "4.4.3", "Host or domain name not found. Name service error for name=servfail.test type=MX: Host not found, try again")
	})
	t.Run("loops-back", func(t *testing.T) {
		r := a.Deliver(ctx, delivery("loop.test", "s@example.org", testMsg, "b@loop.test"))
		check(t, r[0], queue.Failed, "5.4.6", "mail for loop.test loops back to myself")
		// A better MX than ourselves is used.
		r = a.Deliver(ctx, delivery("backup.test", "s@example.org", testMsg, "b@backup.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	})
	t.Run("bracketed-no-mx", func(t *testing.T) {
		r := a.Deliver(ctx, delivery("[mx2.example.test]", "s@example.org", testMsg, "b@example.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
		if !strings.HasPrefix(r[0].Relay, "mx2.example.test[127.0.0.3]") {
			t.Errorf("relay %q", r[0].Relay)
		}
		r = a.Deliver(ctx, delivery(fmt.Sprintf("[127.0.0.3]:%d", w.port), "s@example.org", testMsg, "b@example.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	})
	t.Run("all-dead", func(t *testing.T) {
		r := a.Deliver(ctx, delivery("[127.0.0.6]", "s@example.org", testMsg, "b@example.test", "c@example.test"))
		for _, x := range r {
			check(t, x, queue.Delayed, "4.4.1", fmt.Sprintf("connect to 127.0.0.6[127.0.0.6]:%d: Connection refused", w.port))
			if !x.Site {
				t.Error("connect failure is not a site failure")
			}
		}
	})
}

// Per-recipient results: a 5xx bounces one recipient, a 4xx is tried on
// the next MX and then deferred.
func TestPerRecipient(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), nil)
	mx2 := startPeer(t, "tcp", w.addr("127.0.0.3"), nil)
	a := w.agent(t, nil)
	r := a.Deliver(context.Background(), delivery("example.test", "s@example.org", testMsg, "ok@example.test", "unknown@example.test", "later@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 2.0.0 Ok: queued as Q1")
	check(t, r[1], queue.Failed, "5.1.1", "host mx1.example.test[127.0.0.2] said: 550 5.1.1 <unknown@example.test>: Recipient address rejected: User unknown (in reply to RCPT TO command)")
	check(t, r[2], queue.Delayed, "4.2.1", "host mx2.example.test[127.0.0.3] said: 450 4.2.1 <later@example.test>: Recipient address rejected: Try again later (in reply to RCPT TO command)")
	if r[1].Site || r[2].Site {
		t.Error("recipient rejection marked as site failure")
	}
	if len(mx1.h.messages()) != 1 || len(mx2.h.messages()) != 0 {
		t.Errorf("messages: mx1 %d mx2 %d", len(mx1.h.messages()), len(mx2.h.messages()))
	}
}

// DSN parameters pass through to a server that offers DSN.
func TestDSNPassthrough(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), nil)
	a := w.agent(t, nil)
	d := delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test")
	d.Envelope.Ret, d.Envelope.EnvID = "HDRS", "QID+42"
	d.Recipients[0].Notify = []string{"SUCCESS", "DELAY"}
	d.Recipients[0].ORCPT = "rfc822;B@Example.test"
	r := a.Deliver(context.Background(), d)
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	e := mx1.h.messages()[0].env
	if e.Ret != "HDRS" || e.EnvID != "QID+42" || e.Recipients[0].ORCPT != "rfc822;B@Example.test" || strings.Join(e.Recipients[0].Notify, ",") != "SUCCESS,DELAY" {
		t.Errorf("envelope %+v %+v", e, e.Recipients)
	}
}

// Sessions are reused through the connection cache.
func TestConnectionReuse(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), nil)
	a := w.agent(t, nil)
	for i := range 5 {
		r := a.Deliver(context.Background(), delivery("example.test", "s@example.org", testMsg, fmt.Sprintf("u%d@example.test", i)))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	}
	if n := mx1.accepts.Load(); n != 1 {
		t.Errorf("%d connections for 5 messages", n)
	}
	if a.IdleSessions() != 1 {
		t.Errorf("idle %d", a.IdleSessions())
	}
	a.Close()
	if a.IdleSessions() != 0 {
		t.Errorf("idle after Close %d", a.IdleSessions())
	}
	// Without the cache every message has its own connection.
	b := w.agent(t, func(c *smtp.Config) { c.CacheTimeLimit = -1 })
	for range 3 {
		b.Deliver(context.Background(), delivery("example.test", "s@example.org", testMsg, "x@example.test"))
	}
	if n := mx1.accepts.Load(); n != 4 {
		t.Errorf("%d connections, want 4", n)
	}
}

// TLS at each security level against a server with a self-signed
// certificate for mx1.example.test.
func TestTLSLevels(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), withTLS(t, "mx1.example.test", "mx1.secure.test"))
	plain := startPeer(t, "tcp", w.addr("127.0.0.3"), nil)
	_ = plain
	ctx := context.Background()
	trust := func(o *smtp.Options) { o.TLSConfig = &tls.Config{RootCAs: mx1.roots} }
	tests := []struct {
		name    string
		level   string
		nexthop string
		trusted bool
		outcome queue.Outcome
		reason  string
		tls     bool
	}{
		{"none", "none", "[mx1.example.test]", false, queue.Delivered, "250 ", false},
		{"may", "may", "[mx1.example.test]", false, queue.Delivered, "250 ", true},
		{"may-no-starttls", "may", "[mx2.example.test]", false, queue.Delivered, "250 ", false},
		{"encrypt", "encrypt", "[mx1.example.test]", false, queue.Delivered, "250 ", true},
		{"encrypt-no-starttls", "encrypt", "[mx2.example.test]", false, queue.Delayed, "TLS is required, but was not offered by host mx2.example.test[127.0.0.3]", false},
		{"verify-untrusted", "verify", "[mx1.example.test]", false, queue.Delayed, "Server certificate not verified", false},
		{"verify", "verify", "[mx1.example.test]", true, queue.Delivered, "250 ", true},
		{"secure-untrusted", "secure", "secure.test", false, queue.Delayed, "Server certificate not verified", false},
		{"secure", "secure", "secure.test", true, queue.Delivered, "250 ", true},
		{"secure-wrong-name", "secure", "[127.0.0.2]", true, queue.Delayed, "Server certificate not verified", false},
		{"dane", "dane", "[mx1.example.test]", false, queue.Delivered, "250 ", true},
		{"dane-only", "dane-only", "[mx1.example.test]", false, queue.Delayed, "DANE TLSA lookup problem", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []func(*smtp.Options)
			if tt.trusted {
				opts = append(opts, trust)
			}
			a := w.agent(t, func(c *smtp.Config) { c.TLSLevel = tt.level; c.CacheTimeLimit = -1 }, opts...)
			n := len(mx1.h.messages())
			r := a.Deliver(ctx, delivery(tt.nexthop, "s@example.org", testMsg, "b@example.test"))
			if r[0].Outcome != tt.outcome || !strings.HasPrefix(r[0].Reason, tt.reason) {
				t.Fatalf("got %v %s %q", r[0].Outcome, r[0].DSN, r[0].Reason)
			}
			if tt.outcome == queue.Delivered && strings.HasPrefix(tt.nexthop, "[mx1") || tt.tls {
				msgs := mx1.h.messages()
				if len(msgs) != n+1 {
					t.Fatalf("mx1 got %d new messages", len(msgs)-n)
				}
				if got := msgs[len(msgs)-1].env.Session.TLS != nil; got != tt.tls {
					t.Errorf("TLS used %v, want %v", got, tt.tls)
				}
			}
		})
	}
	// smtp_tls_policy_maps overrides the level per destination.
	a := w.agent(t, func(c *smtp.Config) {
		c.TLSLevel = "may"
		c.TLSPolicy = maps.List{maps.StaticMap{"[mx2.example.test]": "encrypt", ".test": "verify match=nexthop"}}
		c.CacheTimeLimit = -1
	})
	r := a.Deliver(ctx, delivery("[mx2.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delayed, "4.7.4", "TLS is required, but was not offered")
	r = a.Deliver(ctx, delivery("secure.test", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delayed, "4.7.5", "Server certificate not verified")
}

// At level may, a failed handshake is retried in plaintext; at encrypt it
// defers.
func TestTLSHandshakeFailure(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) {
		withTLS(t, "mx1.example.test")(c)
		c.TLS.MinVersion = tls.VersionTLS13
	})
	old := func(o *smtp.Options) { o.TLSConfig = &tls.Config{MaxVersion: tls.VersionTLS12} }
	a := w.agent(t, func(c *smtp.Config) { c.TLSLevel = "may" }, old)
	// A message that waited minimal_backoff_time (Postfix's
	// PREACTIVE_DELAY) may go in plaintext; review_test.go has the
	// cases where it may not.
	d := delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test")
	d.Envelope.Arrival = time.Now().Add(-time.Hour)
	r := a.Deliver(context.Background(), d)
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	if s := mx1.h.messages()[0].env.Session; s.TLS != nil {
		t.Error("delivered over TLS after a failed handshake?")
	}
	if mx1.accepts.Load() != 2 {
		t.Errorf("%d connections, want 2 (TLS, then plaintext)", mx1.accepts.Load())
	}
	b := w.agent(t, func(c *smtp.Config) { c.TLSLevel = "encrypt" }, old)
	r = b.Deliver(context.Background(), delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delayed, "4.7.5", "Cannot start TLS: handshake failure")
}

// SASL to a relay host that requires it.
func TestSASL(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) {
		withTLS(t, "mx1.example.test")(c)
		c.Auth = userPass{"joe", "s3cret"}
	})
	ctx := context.Background()
	base := func(c *smtp.Config) {
		c.TLSLevel = "encrypt"
		c.SASLEnable = true
		c.SASLPasswords = maps.List{maps.StaticMap{"[mx1.example.test]": "joe:s3cret"}}
		c.CacheTimeLimit = -1
	}
	// Postfix's default smtp_sasl_security_options (noplaintext) forbids
	// PLAIN, the only mechanism offered.
	a := w.agent(t, func(c *smtp.Config) {
		base(c)
		c.SASLSecurity = auth.SecurityOptions{NoPlaintext: true, NoAnonymous: true}
		c.SASLTLSSecurity = c.SASLSecurity
	})
	r := a.Deliver(ctx, delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delayed, "4.7.0", "SASL authentication failed; cannot authenticate to server mx1.example.test[127.0.0.2]: no mechanism available")
	// With noanonymous only, PLAIN over TLS is allowed.
	a = w.agent(t, func(c *smtp.Config) { base(c); c.SASLTLSSecurity = auth.SecurityOptions{NoAnonymous: true} })
	r = a.Deliver(ctx, delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	if s := mx1.h.messages()[0].env.Session; s.SASLUsername != "joe" {
		t.Errorf("server saw user %q", s.SASLUsername)
	}
	// A wrong password defers (smtp_sasl_auth_soft_bounce).
	a = w.agent(t, func(c *smtp.Config) {
		base(c)
		c.SASLTLSSecurity = auth.SecurityOptions{NoAnonymous: true}
		c.SASLPasswords = maps.List{maps.StaticMap{"mx1.example.test": "joe:wrong"}}
	})
	r = a.Deliver(ctx, delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delayed, "4.7.8", "SASL authentication failed; server mx1.example.test[127.0.0.2] said: 535 5.7.8")
}

// LMTP over a unix socket: one result per recipient after the message.
func TestLMTPUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "lmtp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "lmtp.sock")
	p := startPeer(t, "unix", sock, func(c *smtpserver.Config) { c.Role = smtpserver.RoleLMTP })
	w := newWorld(t)
	a := w.agent(t, func(c *smtp.Config) { c.LMTP = true })
	r := a.Deliver(context.Background(), delivery("unix:"+sock, "s@example.org", testMsg, "a@example.test", "full@example.test", "unknown@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 2.0.0")
	check(t, r[1], queue.Delayed, "4.2.2", "host client.test["+sock+"] said: 452 4.2.2 <full@example.test> Mailbox full (in reply to end of DATA command)")
	check(t, r[2], queue.Failed, "5.1.1", "host client.test["+sock+"] said: 550 5.1.1")
	if r[0].Relay != "client.test["+sock+"]" {
		t.Errorf("relay %q", r[0].Relay)
	}
	if len(p.h.messages()) != 1 {
		t.Errorf("%d messages", len(p.h.messages()))
	}
	// inet: form, and a missing socket.
	r = a.Deliver(context.Background(), delivery("unix:"+sock+".missing", "s@example.org", testMsg, "a@example.test"))
	check(t, r[0], queue.Delayed, "4.4.1", "connect to client.test["+sock+".missing]: No such file or directory")
	lp := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) { c.Role = smtpserver.RoleLMTP })
	r = a.Deliver(context.Background(), delivery("inet:"+w.addr("127.0.0.2"), "s@example.org", testMsg, "a@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 2.0.0")
	if len(lp.h.messages()) != 1 {
		t.Error("LMTP over TCP not delivered")
	}
}

// Postfix's smtp-sink failure modes, seen through the agent.
func TestSmtpSinkFailures(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	tests := []struct {
		flags   []string
		outcome queue.Outcome
		dsn     string
		reason  string
	}{
		{[]string{"-f", "RCPT"}, queue.Failed, "5.3.0", "host 127.0.0.2[127.0.0.2] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command)"},
		{[]string{"-r", "MAIL"}, queue.Delayed, "4.3.0", "host 127.0.0.2[127.0.0.2] said: 450 4.3.0 Error: command failed (in reply to MAIL FROM command)"},
		{[]string{"-f", "MAIL"}, queue.Failed, "5.3.0", "host 127.0.0.2[127.0.0.2] said: 500 5.3.0 Error: command failed (in reply to MAIL FROM command)"},
		{[]string{"-f", "DATA"}, queue.Failed, "5.3.0", "host 127.0.0.2[127.0.0.2] said: 500 5.3.0 Error: command failed (in reply to DATA command)"},
		{[]string{"-r", "."}, queue.Delayed, "4.3.0", "host 127.0.0.2[127.0.0.2] said: 450 4.3.0 Error: command failed (in reply to end of DATA command)"},
		{[]string{"-f", "CONNECT"}, queue.Delayed, "4.3.0", "host 127.0.0.2[127.0.0.2] refused to talk to me: 500 5.3.0 Error: command failed"},
		{[]string{"-q", "RCPT"}, queue.Delayed, "4.4.2", "lost connection with 127.0.0.2[127.0.0.2] while sending RCPT TO"},
		{[]string{"-Q", "MAIL"}, queue.Delayed, "4.0.0", "host 127.0.0.2[127.0.0.2] said: 421 4.0.0 Server closing connection (in reply to MAIL FROM command)"},
		{[]string{"-Q", "RCPT"}, queue.Delayed, "4.0.0", "host 127.0.0.2[127.0.0.2] said: 421 4.0.0 Server closing connection (in reply to RCPT TO command)"},
		{nil, queue.Delivered, "2.0.0", "250 2.0.0 Ok"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.flags, ""), func(t *testing.T) {
			port := freePort(t, "127.0.0.2")
			startSink(t, fmt.Sprintf("127.0.0.2:%d", port), tt.flags...)
			a := w.agent(t, func(c *smtp.Config) { c.Port = port })
			r := a.Deliver(ctx, delivery("[127.0.0.2]", "s@example.org", testMsg, "a@example.test"))
			check(t, r[0], tt.outcome, tt.dsn, tt.reason)
		})
	}
}

var _ = net.Dial

// smtp_mx_session_limit, smtp_mx_address_limit and smtp_skip_5xx_greeting.
func TestLimits(t *testing.T) {
	w := newWorld(t)
	if err := w.dns.Add(`
$ORIGIN test.
three          MX 10 mx1.example
three          MX 20 mx2.example
three          MX 30 mx3.three
mx3.three      A  127.0.0.6
deadthree      MX 10 d1.deadthree
deadthree      MX 20 d2.deadthree
deadthree      MX 30 mx1.example
d1.deadthree   A  127.0.0.4
d2.deadthree   A  127.0.0.5
`); err != nil {
		t.Fatal(err)
	}
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), nil)
	mx2 := startPeer(t, "tcp", w.addr("127.0.0.3"), nil)
	mx3 := startPeer(t, "tcp", w.addr("127.0.0.6"), nil)
	ctx := context.Background()
	a := w.agent(t, func(c *smtp.Config) { c.CacheTimeLimit = -1 })
	// Two sessions (the default limit), then the 4xx is final.
	r := a.Deliver(ctx, delivery("three.test", "s@example.org", testMsg, "later@three.test"))
	check(t, r[0], queue.Delayed, "4.2.1", "host mx2.example.test[127.0.0.3] said: 450 4.2.1")
	if mx1.accepts.Load() != 1 || mx2.accepts.Load() != 1 || mx3.accepts.Load() != 0 {
		t.Errorf("sessions: %d %d %d", mx1.accepts.Load(), mx2.accepts.Load(), mx3.accepts.Load())
	}
	// With a limit of two addresses, the live third MX is never tried.
	b := w.agent(t, func(c *smtp.Config) { c.MXAddressLimit = 2; c.CacheTimeLimit = -1 })
	r = b.Deliver(ctx, delivery("deadthree.test", "s@example.org", testMsg, "x@deadthree.test"))
	check(t, r[0], queue.Delayed, "4.4.1", fmt.Sprintf("connect to d2.deadthree.test[127.0.0.5]:%d: Connection refused", w.port))
	if mx1.accepts.Load() != 1 {
		t.Error("third MX tried despite smtp_mx_address_limit = 2")
	}
	r = a.Deliver(ctx, delivery("deadthree.test", "s@example.org", testMsg, "x@deadthree.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
}

func TestGreeting5xx(t *testing.T) {
	w := newWorld(t)
	startSink(t, w.addr("127.0.0.2"), "-f", "CONNECT")
	ctx := context.Background()
	// Default: skip the server, defer.
	a := w.agent(t, nil)
	r := a.Deliver(ctx, delivery("[127.0.0.2]", "s@example.org", testMsg, "x@example.test"))
	check(t, r[0], queue.Delayed, "4.3.0", "host 127.0.0.2[127.0.0.2] refused to talk to me: 500 5.3.0 Error: command failed")
	if !r[0].Site {
		t.Error("greeting failure is not a site failure")
	}
	// smtp_skip_5xx_greeting = no: bounce.
	b := w.agent(t, func(c *smtp.Config) { c.Bounce5xxGreeting = true })
	r = b.Deliver(ctx, delivery("[127.0.0.2]", "s@example.org", testMsg, "x@example.test"))
	check(t, r[0], queue.Failed, "5.3.0", "host 127.0.0.2[127.0.0.2] refused to talk to me: 500 5.3.0")
}

// FromConfig reads the lmtp_* parameters, smtp_generic_maps and the
// policy tables from main.cf.
func TestFromConfig(t *testing.T) {
	w := newWorld(t)
	p := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) { c.Role = smtpserver.RoleLMTP })
	main := fmt.Sprintf(`myhostname = client.test
lmtp_tcp_port = %d
lmtp_lhlo_name = lhlo.client.test
inet_interfaces = 127.0.0.1
lmtp_generic_maps = inline:{s@example.org=outside@example.net}
lmtp_tls_security_level = none
`, w.port)
	cfg, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		t.Fatal(err)
	}
	a, err := smtp.FromConfig(context.Background(), cfg, "lmtp", smtp.Options{Resolver: w.res})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	msg := strings.Replace(testMsg, "From: a@example.org", "From: s@example.org", 1) + "s@example.org in the body\r\n"
	r := a.Deliver(context.Background(), delivery("inet:127.0.0.2", "s@example.org", msg, "b@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 2.0.0")
	m := p.h.messages()[0]
	if !strings.Contains(m.buf.String(), "\r\ns@example.org in the body\r\n") {
		t.Error("body changed")
	}
	if m.env.Sender != "outside@example.net" {
		t.Errorf("generic mapping not applied: %q", m.env.Sender)
	}
	// Header addresses too; the body is left alone.
	if got := m.buf.String(); !strings.Contains(got, "\r\nFrom: outside@example.net\r\n") || !strings.Contains(got, "\r\nTo: b@example.com\r\n") {
		t.Errorf("headers not mapped:\n%s", got)
	}
	if m.env.Session == nil || m.env.Session.Helo != "lhlo.client.test" {
		t.Errorf("LHLO name: %+v", m.env.Session)
	}
	// A bad value names the parameter.
	cfg.Set("lmtp_tcp_port", "nope")
	if _, err := smtp.FromConfig(context.Background(), cfg, "lmtp", smtp.Options{Resolver: w.res}); err == nil || !strings.Contains(err.Error(), "lmtp_tcp_port") {
		t.Errorf("bad port: %v", err)
	}
}

// Many deliveries at once share the cache safely; every message arrives
// once.
func TestConcurrentDeliver(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), nil)
	a := w.agent(t, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				r := a.Deliver(context.Background(), delivery("example.test", "s@example.org", testMsg, fmt.Sprintf("g%di%d@example.test", g, i)))
				if r[0].Outcome != queue.Delivered {
					errs <- r[0].Reason
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := len(mx1.h.messages()); n != 40 {
		t.Errorf("%d messages, want 40", n)
	}
	if n := mx1.accepts.Load(); n > 16 {
		t.Errorf("%d connections for 40 messages from 8 workers", n)
	}
	t.Logf("%d connections", mx1.accepts.Load())
}

// smtp_tls_CAfile and smtp_tls_policy_maps from main.cf.
func TestFromConfigTLS(t *testing.T) {
	w := newWorld(t)
	cert, err := smtpserver.SelfSigned("mx1.example.test")
	if err != nil {
		t.Fatal(err)
	}
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.TLSLevel = smtpserver.TLSMay
	})
	startPeer(t, "tcp", w.addr("127.0.0.3"), nil)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := smtpserver.WriteCertificatePEM(cert, ca, filepath.Join(dir, "key.pem")); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`myhostname = client.test
smtp_tcp_port = %d
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtp_tls_security_level = verify
smtp_tls_CAfile = %s
smtp_tls_policy_maps = inline:{[mx2.example.test]=encrypt}
`, w.port, ca)
	cfg, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		t.Fatal(err)
	}
	a, err := smtp.FromConfig(context.Background(), cfg, "smtp", smtp.Options{Resolver: w.res})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r := a.Deliver(context.Background(), delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	if mx1.h.messages()[0].env.Session.TLS == nil {
		t.Error("not delivered over TLS")
	}
	r = a.Deliver(context.Background(), delivery("[mx2.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delayed, "4.7.4", "TLS is required, but was not offered by host mx2.example.test[127.0.0.3]")
	// Against a name the certificate does not carry, verify fails.
	r = a.Deliver(context.Background(), delivery(fmt.Sprintf("[127.0.0.2]:%d", w.port), "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delayed, "4.7.5", "Server certificate not verified")
}

// authenticator adapts package auth's Authenticator to smtpserver.
type authenticator struct{ a *auth.Authenticator }

func (b authenticator) Mechanisms(tls bool) []string { return b.a.Mechanisms(auth.SecurityOptions{}) }
func (b authenticator) NewMech(name string) (auth.ServerMech, error) {
	return b.a.NewMech(name)
}

// With Postfix's default smtp_sasl_security_options (noplaintext,
// noanonymous) and a server that offers CRAM-MD5 (package auth's
// Authenticator), the agent authenticates with CRAM-MD5; a password map
// entry keyed by the server's host name is found.
func TestSASLCRAMMD5(t *testing.T) {
	w := newWorld(t)
	authn := &auth.Authenticator{
		PassDB: auth.PassDBFunc(func(ctx context.Context, user string) (auth.Credentials, error) {
			if user != "joe" {
				return auth.Credentials{}, auth.ErrUnknownUser
			}
			return auth.Credentials{User: "joe", Password: "{PLAIN}s3cret"}, nil
		}),
		AuthMechanisms: []string{"PLAIN", "LOGIN", "CRAM-MD5"},
		FailureDelay:   -1,
		Hostname:       "mx1.example.test",
	}
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) { c.Auth = authenticator{authn} })
	opts, err := auth.ParseSecurityOptions("noplaintext, noanonymous")
	if err != nil {
		t.Fatal(err)
	}
	a := w.agent(t, func(c *smtp.Config) {
		c.SASLEnable = true
		c.SASLSecurity, c.SASLTLSSecurity = opts, opts
		c.SASLPasswords = maps.List{maps.StaticMap{"mx1.example.test": "joe:s3cret"}}
	})
	r := a.Deliver(context.Background(), delivery("example.test", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	s := mx1.h.messages()[0].env.Session
	if s.SASLUsername != "joe" || s.SASLMethod != "CRAM-MD5" {
		t.Errorf("server saw %q with %q", s.SASLUsername, s.SASLMethod)
	}
}

// smtp_tls_servername, smtp_bind_address and smtp_address_preference.
func TestSNIBindAndFamily(t *testing.T) {
	w := newWorld(t)
	if err := w.dns.Add("$ORIGIN test.\ndual A 127.0.0.2\ndual AAAA ::1\n"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sni []string
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) {
		withTLS(t, "mx1.example.test")(c)
		c.TLS.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			mu.Lock()
			sni = append(sni, h.ServerName)
			mu.Unlock()
			return nil, nil
		}
	})
	ctx := context.Background()
	for _, tt := range []struct{ param, want string }{{"", ""}, {"hostname", "mx1.example.test"}, {"nexthop", "example.test"}, {"other.example", "other.example"}} {
		a := w.agent(t, func(c *smtp.Config) { c.TLSLevel = "may"; c.TLSServerName = tt.param; c.CacheTimeLimit = -1 })
		r := a.Deliver(ctx, delivery("example.test", "s@example.org", testMsg, "b@example.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
		mu.Lock()
		if got := sni[len(sni)-1]; got != tt.want {
			t.Errorf("smtp_tls_servername=%q: SNI %q, want %q", tt.param, got, tt.want)
		}
		mu.Unlock()
	}
	b := w.agent(t, func(c *smtp.Config) { c.BindAddress = netip.MustParseAddr("127.0.0.7") })
	r := b.Deliver(ctx, delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	msgs := mx1.h.messages()
	if got := msgs[len(msgs)-1].env.Session.ClientAddr; got != netip.MustParseAddr("127.0.0.7") {
		t.Errorf("client address %v, want 127.0.0.7", got)
	}

	v6 := startPeer(t, "tcp", fmt.Sprintf("[::1]:%d", w.port), nil)
	for _, tt := range []struct{ pref, want string }{{"ipv6", "dual.test[::1]"}, {"ipv4", "dual.test[127.0.0.2]"}} {
		for range 5 {
			a := w.agent(t, func(c *smtp.Config) {
				c.IPv4, c.IPv6 = true, true
				c.AddressPreference = tt.pref
				c.CacheTimeLimit = -1
			})
			r := a.Deliver(ctx, delivery("dual.test", "s@example.org", testMsg, "b@example.test"))
			check(t, r[0], queue.Delivered, "2.0.0", "250 ")
			if !strings.HasPrefix(r[0].Relay, tt.want) {
				t.Errorf("smtp_address_preference=%s: relay %s\n%s", tt.pref, r[0].Relay, w.logs)
			}
		}
	}
	if len(v6.h.messages()) != 5 {
		t.Errorf("IPv6 server got %d messages", len(v6.h.messages()))
	}
}

// Several nexthops, smtp_fallback_relay and
// smtp_defer_if_no_mx_address_found.
func TestFallbackAndLists(t *testing.T) {
	w := newWorld(t)
	mx2 := startPeer(t, "tcp", w.addr("127.0.0.3"), nil)
	ctx := context.Background()
	a := w.agent(t, func(c *smtp.Config) { c.FallbackRelay = []string{"[mx2.example.test]"} })
	r := a.Deliver(ctx, delivery("[127.0.0.6]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	if !strings.HasPrefix(r[0].Relay, "mx2.example.test[127.0.0.3]") || len(mx2.h.messages()) != 1 {
		t.Errorf("fallback relay not used: %q", r[0].Relay)
	}
	b := w.agent(t, nil)
	r = b.Deliver(ctx, delivery("[127.0.0.6], nullmx.test [mx2.example.test]", "s@example.org", testMsg, "b@example.test"))
	// The null MX of the second destination is final: the third is not tried.
	check(t, r[0], queue.Failed, "5.1.0", "Domain nullmx.test does not accept mail (nullMX)")
	r = b.Deliver(ctx, delivery("[127.0.0.6], [mx2.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	c := w.agent(t, func(c *smtp.Config) { c.DeferIfNoMXAddress = true })
	r = c.Deliver(ctx, delivery("noaddr.test", "s@example.org", testMsg, "b@noaddr.test"))
	check(t, r[0], queue.Delayed, "4.4.4", "no MX host for noaddr.test has a valid address record")
	r = c.Deliver(ctx, delivery("bad[nexthop", "s@example.org", testMsg, "b@noaddr.test"))
	check(t, r[0], queue.Delayed, "4.3.5", `bad next-hop destination "bad[nexthop"`)
}

// A cached session the server has closed meanwhile fails its RSET probe
// and is replaced by a new connection.
func TestStaleCachedSession(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) { c.Timeout = 300 * time.Millisecond })
	a := w.agent(t, func(c *smtp.Config) { c.CacheTimeLimit = time.Minute })
	for range 2 {
		r := a.Deliver(context.Background(), delivery("example.test", "s@example.org", testMsg, "b@example.test"))
		check(t, r[0], queue.Delivered, "2.0.0", "250 ")
		if a.IdleSessions() != 1 {
			t.Fatal("session not cached")
		}
		time.Sleep(time.Second) // the server's idle timeout ends the cached session
	}
	if n := mx1.accepts.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	if len(mx1.h.messages()) != 2 {
		t.Errorf("%d messages", len(mx1.h.messages()))
	}
}

package smtp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/mda/smtp"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/smtpserver"
)

// A queue file that cannot be read defers every recipient with the
// reason, also when the server is not the last one (the recipients were
// left without a Result).
func TestUnreadableQueueFile(t *testing.T) {
	w := newWorld(t)
	startPeer(t, "tcp", w.addr("127.0.0.2"), nil)
	startPeer(t, "tcp", w.addr("127.0.0.3"), nil)
	a := w.agent(t, func(c *smtp.Config) { c.CacheTimeLimit = -1 })
	d := delivery("example.test", "s@example.org", testMsg, "b@example.test", "c@example.test")
	d.Open = func() (io.ReadCloser, error) { return nil, errors.New("gone") }
	r := a.Deliver(context.Background(), d)
	for i := range r {
		check(t, r[i], queue.Delayed, "4.3.0", "cannot read the queued message: gone")
	}
}

// At TLS level may a failed handshake is retried in plaintext only as
// Postfix's PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE allows: not on a
// message's first attempt (it arrived less than minimal_backoff_time
// ago), and never to a server we have SASL credentials for, whose
// password would then cross the network in the clear.
func TestTLSMayFallbackRules(t *testing.T) {
	w := newWorld(t)
	mx1 := startPeer(t, "tcp", w.addr("127.0.0.2"), func(c *smtpserver.Config) {
		withTLS(t, "mx1.example.test")(c)
		c.TLS.MinVersion = tls.VersionTLS13
		c.Auth = userPass{"joe", "s3cret"}
	})
	old := func(o *smtp.Options) { o.TLSConfig = &tls.Config{MaxVersion: tls.VersionTLS12} }
	ctx := context.Background()
	aged := func() *queue.Delivery {
		d := delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test")
		d.Envelope.Arrival = time.Now().Add(-time.Hour)
		return d
	}

	// First attempt: deferred, one connection, nothing delivered.
	a := w.agent(t, func(c *smtp.Config) { c.TLSLevel = "may"; c.CacheTimeLimit = -1 }, old)
	r := a.Deliver(ctx, delivery("[mx1.example.test]", "s@example.org", testMsg, "b@example.test"))
	check(t, r[0], queue.Delayed, "4.7.5", "Cannot start TLS: handshake failure")
	if !r[0].Site {
		t.Error("a failed handshake is not a site failure")
	}
	if n := mx1.accepts.Load(); n != 1 || len(mx1.h.messages()) != 0 {
		t.Errorf("fresh message: %d connections, %d messages; want 1, 0", n, len(mx1.h.messages()))
	}

	// Credentials for the server, security options that would allow
	// PLAIN without TLS: still no plaintext retry.
	b := w.agent(t, func(c *smtp.Config) {
		c.TLSLevel = "may"
		c.CacheTimeLimit = -1
		c.SASLEnable = true
		c.SASLPasswords = maps.List{maps.StaticMap{"[mx1.example.test]": "joe:s3cret"}}
		c.SASLSecurity = auth.SecurityOptions{NoAnonymous: true}
		c.SASLTLSSecurity = c.SASLSecurity
	}, old)
	r = b.Deliver(ctx, aged())
	check(t, r[0], queue.Delayed, "4.7.5", "Cannot start TLS: handshake failure")
	if n := mx1.accepts.Load(); n != 2 || len(mx1.h.messages()) != 0 {
		t.Errorf("with SASL credentials: %d connections, %d messages; want 2, 0", n, len(mx1.h.messages()))
	}

	// An aged message and no credentials: plaintext, as before.
	r = a.Deliver(ctx, aged())
	check(t, r[0], queue.Delivered, "2.0.0", "250 ")
	if n := mx1.accepts.Load(); n != 4 || len(mx1.h.messages()) != 1 {
		t.Errorf("aged message: %d connections, %d messages; want 4, 1", n, len(mx1.h.messages()))
	}
}

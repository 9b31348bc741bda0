package smtpserver_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/resolver/dnstest"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// messages records the server's log messages.
type messages struct {
	mu    sync.Mutex
	lines []string
}

func (m *messages) Enabled(context.Context, slog.Level) bool { return true }
func (m *messages) Handle(_ context.Context, r slog.Record) error {
	m.mu.Lock()
	m.lines = append(m.lines, r.Message)
	m.mu.Unlock()
	return nil
}
func (m *messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m *messages) WithGroup(string) slog.Handler      { return m }
func (m *messages) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.lines)
}

// With smtpd_peername_lookup = yes (the default) and a resolver,
// ConfigFrom looks the client up at connect as Postfix does: the PTR name,
// verified by its A record, is the name in the logs and restrictions.
func TestPeernameLookup(t *testing.T) {
	dns := dnstest.New(t, `
$ORIGIN example.
$TTL 300
@           IN SOA ns.example. hostmaster.example. 1 3600 600 86400 60
client      IN A   127.0.0.1
1.0.0.127.in-addr.arpa. IN PTR client.example.
`)
	for _, lookup := range []string{"yes", "no"} {
		c, err := config.Parse("main.cf", strings.NewReader("compatibility_level = 3.6\nmyhostname = mx.oracle.test\n"+
			"smtpd_peername_lookup = "+lookup+"\nsmtpd_client_restrictions = check_client_access inline:{{client.example=REJECT by name}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		logs := &messages{}
		cfg, err := smtpserver.ConfigFrom(context.Background(), c, smtpserver.RoleSMTP,
			restrictions.Options{Resolver: dns.Resolver(), Logger: slog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Handoff = &smtptest.Handoff{}
		srv, err := smtpserver.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		addr := ln.Addr().String()
		conn := smtptest.Dial(t, addr)
		conn.Cmd("EHLO me.example")
		conn.Cmd("MAIL FROM:<a@example.com>")
		r := conn.Cmd("RCPT TO:<b@example.com>")
		conn.Cmd("QUIT")
		wantName, wantReply := "client.example[127.0.0.1]", "554 5.7.1 <client.example[127.0.0.1]>: Client host rejected: by name"
		if lookup == "no" {
			wantName, wantReply = "unknown[127.0.0.1]", "250 2.1.5 Ok" // the name is not looked up; mynetworks lets 127.0.0.1 relay
		}
		if r.String() != wantReply {
			t.Errorf("lookup=%s: RCPT got %q, want %q", lookup, r.String(), wantReply)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Contains(logs.all(), "connect from "+wantName) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !slices.Contains(logs.all(), "connect from "+wantName) {
			t.Errorf("lookup=%s: no %q in %q", lookup, "connect from "+wantName, logs.all())
		}
	}
}

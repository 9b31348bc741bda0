package smtpserver

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/resolver/dnstest"
	"github.com/postkit-mail/postkit/restrictions"
)

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
		cfg, err := ConfigFrom(context.Background(), c, RoleSMTP, restrictions.Options{Resolver: dns.Resolver()})
		if err != nil {
			t.Fatal(err)
		}
		addr, _, logs := startServer(t, cfg)
		cl, _ := dial(t, addr)
		cl.cmd("EHLO me.example")
		cl.cmd("MAIL FROM:<a@example.com>")
		got := cl.cmd("RCPT TO:<b@example.com>")
		cl.cmd("QUIT")
		wantName, wantReply := "client.example[127.0.0.1]", "554 5.7.1 <client.example[127.0.0.1]>: Client host rejected: by name"
		if lookup == "no" {
			// The name is not looked up; mynetworks lets 127.0.0.1 relay.
			wantName, wantReply = "unknown[127.0.0.1]", "250 2.1.5 Ok"
		}
		if strings.TrimSpace(got) != wantReply {
			t.Errorf("lookup=%s: RCPT got %q, want %q", lookup, got, wantReply)
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

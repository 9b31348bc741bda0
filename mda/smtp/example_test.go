package smtp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/mda/smtp"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/resolver/dnstest"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// Delivering one message by MX lookup: an in-process DNS zone sends
// example.com's mail to a postkit server on 127.0.0.2.
func Example() {
	h := &smtptest.Handoff{}
	srv, _ := smtpserver.New(smtpserver.Config{Hostname: "mx.example.com", Handoff: h, Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	dns, _ := dnstest.Start(`
$ORIGIN example.com.
@   MX 10 mx
mx  A  127.0.0.2
`)
	defer dns.Close()

	agent, err := smtp.New(smtp.Config{
		MyHostname: "client.example.org",
		Port:       ln.Addr().(*net.TCPAddr).Port, // smtp_tcp_port
	}, smtp.Options{Resolver: dns.Resolver()})
	if err != nil {
		panic(err)
	}
	defer agent.Close()

	msg := "Subject: hello\r\n\r\nHi Bob.\r\n"
	env := &cleanup.Envelope{Sender: "alice@example.org", Recipients: []cleanup.Recipient{{Addr: "bob@example.com"}}}
	d := &queue.Delivery{
		Envelope: env, Transport: "smtp", Nexthop: "example.com",
		Recipients: []queue.Recipient{{Index: 0, Addr: "bob@example.com", Recipient: env.Recipients[0]}},
		Size:       int64(len(msg)),
		Open:       func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil },
	}
	for _, r := range agent.Deliver(context.Background(), d) {
		relay, _, _ := strings.Cut(r.Relay, "]:")
		fmt.Println(r.Outcome, r.DSN, relay+"]")
	}
	// Output:
	// delivered 2.0.0 mx.example.com[127.0.0.2]
}

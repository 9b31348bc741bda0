package smtpclient_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/postkit-mail/postkit/smtpclient"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// Sending one message: connect, EHLO, one transaction with DSN
// parameters, QUIT. The server here is postkit's own, on loopback.
func Example() {
	h := &smtptest.Handoff{}
	srv, _ := smtpserver.New(smtpserver.Config{Hostname: "mx.example.com", Handoff: h, Logger: slog.New(slog.DiscardHandler)})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()

	ctx := context.Background()
	c, err := smtpclient.Dial(ctx, "tcp", ln.Addr().String(), smtpclient.Options{LocalName: "client.example.org"})
	if err != nil {
		panic(err)
	}
	if err := c.Hello(ctx); err != nil {
		panic(err)
	}
	fmt.Println("server:", c.ServerName(), "pipelining:", c.Extensions().Pipelining)
	env := &smtpclient.Envelope{
		From: "alice@example.org",
		Rcpts: []smtpclient.Rcpt{
			{Addr: "bob@example.com", Notify: []string{"FAILURE"}},
		},
	}
	res, err := c.Send(ctx, env, strings.NewReader("Subject: hello\r\n\r\nHi Bob.\r\n"))
	if err != nil {
		panic(err)
	}
	fmt.Println("RCPT:", res.Rcpt[0].Code, "end of data:", res.Final[0].Code, res.Final[0].DSN())
	c.Quit(ctx)
	fmt.Printf("%s", h.Messages()[0].Envelope.Recipients[0].Addr)
	// Output:
	// server: mx.example.com pipelining: true
	// RCPT: 250 end of data: 250 2.0.0
	// bob@example.com
}

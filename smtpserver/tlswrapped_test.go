package smtpserver_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// A caller that wraps the listener in TLS itself (tls.NewListener over the
// server's Listener, the usual way to serve port 465) gets a session that
// knows it is encrypted: no STARTTLS offered, ESMTPS in Received:.
func TestCallerWrappedTLS(t *testing.T) {
	cert, err := smtpserver.SelfSigned("mx.oracle.test")
	if err != nil {
		t.Fatal(err)
	}
	h := &smtptest.Handoff{}
	srv, err := smtpserver.New(smtpserver.Config{Hostname: "mx.oracle.test", Handoff: h})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}}))
	t.Cleanup(func() { srv.Close() })

	tc, err := tls.Dial("tcp", raw.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c := smtptest.NewConn(t, tc)
	if c.Banner().Code != 220 {
		t.Fatalf("banner %q", c.Banner())
	}
	ehlo := c.Cmd("EHLO client.example")
	if strings.Contains(ehlo.String(), "STARTTLS") {
		t.Errorf("STARTTLS offered inside TLS:\n%s", ehlo)
	}
	c.Cmd("MAIL FROM:<a@example.com>")
	c.Cmd("RCPT TO:<b@example.com>")
	if r := c.Cmd("DATA"); r.Code != 354 {
		t.Fatalf("DATA: %s", r)
	}
	if r := c.Data("Subject: x\n\nhello\n"); r.Code != 250 {
		t.Fatalf("end of data: %s", r)
	}
	msgs := h.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages handed off", len(msgs))
	}
	if !strings.Contains(string(msgs[0].Data), "with ESMTPS id") {
		t.Errorf("message not marked as received over TLS:\n%s", msgs[0].Data)
	}
}

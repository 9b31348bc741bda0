package bounce_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/bounce"
)

// A message from alice could not be delivered to one recipient and was
// delivered to another that asked for a success notice: the queue asks
// for the non-delivery and success notices and queues what it gets.
func ExampleSettings_Notices() {
	s := bounce.Defaults("mx.example.com")
	s.NotifyClasses = []string{"bounce"} // a copy for the postmaster

	original := "From: alice@example.org\nSubject: hello\n\nhi\n"
	msg := &bounce.Message{
		QueueID: "3F1A2B4C5D",
		Arrival: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC),
		Sender:  "alice@example.org",
		Ret:     bounce.RetHdrs,
		Recipients: []bounce.Recipient{
			{Address: "bob@example.net", Action: bounce.Failed, Status: "5.1.1",
				RemoteMTA: "mx.example.net", DiagnosticCode: "smtp; 550 5.1.1 no such user",
				Reason: "host mx.example.net[192.0.2.9] said: 550 5.1.1 no such user (in reply to RCPT TO command)"},
			{Address: "carol@example.net", Action: bounce.Relayed, Status: "2.0.0", Notify: bounce.NotifySuccess,
				RemoteMTA: "mx.example.net", DiagnosticCode: "smtp; 250 2.0.0 queued",
				Reason: "delivery via mx.example.net[192.0.2.9]:25: 250 2.0.0 queued"},
		},
		Content: strings.NewReader(original),
		Size:    int64(len(original)),
	}
	for _, kind := range []bounce.Kind{bounce.Failure, bounce.Delay, bounce.Success} {
		notices, err := s.Notices(kind, msg)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, n := range notices {
			subject := strings.SplitN(strings.SplitN(string(n.Data), "Subject: ", 2)[1], "\r\n", 2)[0]
			fmt.Printf("%s notice for %s: from <%s> to <%s>: %s\n", kind, n.Class, n.Sender, n.Recipient, subject)
		}
	}
	// Output:
	// non-delivery notice for sender: from <> to <alice@example.org>: Undelivered Mail Returned to Sender
	// non-delivery notice for bounce: from <double-bounce@mx.example.com> to <postmaster@mx.example.com>: Postmaster Copy: Undelivered Mail
	// success notice for sender: from <> to <alice@example.org>: Successful Mail Delivery Report
}

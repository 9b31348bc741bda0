package queue_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/queue"
)

// A message committed, tried, deferred and then delivered, as cleanup and
// the scheduler drive the queue.
func Example() {
	dir, _ := os.MkdirTemp("", "queue-example")
	defer os.RemoveAll(dir)
	clock := queue.NewFakeClock(time.Date(2026, 11, 28, 5, 0, 0, 0, time.UTC))
	q, err := queue.Open(dir, queue.Options{Clock: clock})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()

	// cleanup's side: Create, Write, Commit (durable when it returns).
	f, err := q.Create(ctx, clock.Now())
	if err != nil {
		log.Fatal(err)
	}
	io.WriteString(f, "Subject: hello\r\n\r\nHi Bob.\r\n")
	err = f.Commit(ctx, &cleanup.Envelope{Sender: "alice@example.com",
		Recipients: []cleanup.Recipient{{Addr: "bob@example.net"}, {Addr: "carol@example.org"}}})
	if err != nil {
		log.Fatal(err)
	}
	id := f.ID()

	// The scheduler's side: take it, record one delivery and one
	// temporary failure, and defer it for five minutes.
	q.Move(ctx, id, queue.Active)
	q.MarkRecipients(ctx, id, []queue.Status{
		{Rcpt: 0, Outcome: queue.Delivered, DSN: "2.0.0", Relay: "mx.example.net[192.0.2.1]:25"},
		{Rcpt: 1, Outcome: queue.Delayed, DSN: "4.4.1", Reason: "connect to mx.example.org[192.0.2.2]:25: Connection refused"},
	})
	q.Defer(ctx, id, clock.Now().Add(5*time.Minute))

	deferred, _ := q.List(queue.Deferred)
	fmt.Println(len(deferred), "deferred, due", deferred[0].ModTime.UTC().Format(time.TimeOnly))

	m, err := q.Read(id)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(m.Body())
	fmt.Printf("%s body %q\n", m.State, body)
	for _, i := range m.Pending() {
		fmt.Println("still to do:", m.Envelope.Recipients[i].Addr, "-", m.Status[i].Reason)
	}
	m.Close()

	// The retry succeeds: record it and remove the message.
	q.MarkRecipients(ctx, id, []queue.Status{{Rcpt: 1, Outcome: queue.Delivered, DSN: "2.0.0"}})
	q.Remove(ctx, id)
	_, err = q.Read(id)
	fmt.Println(err != nil)
	// Output:
	// 1 deferred, due 05:05:00
	// deferred body "Hi Bob.\r\n"
	// still to do: carol@example.org - connect to mx.example.org[192.0.2.2]:25: Connection refused
	// true
}

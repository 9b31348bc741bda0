package queue_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/queue"
)

// A Scheduler over a queue, with a Deliverer that refuses one recipient
// for now: the message is delivered to the others and deferred for that
// one, with the retry time spec §7.4 gives.
func ExampleScheduler() {
	dir, _ := os.MkdirTemp("", "queue-example")
	defer os.RemoveAll(dir)
	clock := queue.NewFakeClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	q, err := queue.Open(dir, queue.Options{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()

	deliver := queue.DelivererFunc(func(ctx context.Context, d *queue.Delivery) []queue.Result {
		var res []queue.Result
		for _, r := range d.Recipients {
			if strings.HasPrefix(r.Addr, "busy@") {
				res = append(res, queue.Result{Outcome: queue.Delayed, DSN: "4.2.1", Reason: "mailbox busy"})
				continue
			}
			res = append(res, queue.Result{Outcome: queue.Delivered, Relay: "local", Reason: "delivered to mailbox"})
		}
		return res
	})
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{
		Deliverer: deliver,
		Router:    queue.DomainRouter("local"),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	s.Start()
	defer s.Stop(context.Background())

	// What cleanup does when a message arrives.
	f, _ := q.Create(context.Background(), time.Time{})
	f.Write([]byte("Subject: hi\r\n\r\nhello\r\n"))
	f.Commit(context.Background(), &cleanup.Envelope{Sender: "alice@example.com",
		Recipients: []cleanup.Recipient{{Addr: "bob@example.net"}, {Addr: "busy@example.net"}}})

	s.Sync(context.Background())
	deferred, _ := q.List(queue.Deferred)
	m, _ := q.Read(deferred[0].ID)
	defer m.Close()
	for i, st := range m.Status {
		fmt.Printf("%s: %s %s %s\n", m.Envelope.Recipients[i].Addr, st.Outcome, st.DSN, st.Reason)
	}
	fmt.Println("next attempt in", m.ModTime.Sub(clock.Now()))
	// Output:
	// bob@example.net: delivered 2.0.0 delivered to mailbox
	// busy@example.net: delayed 4.2.1 mailbox busy
	// next attempt in 5m0s
}

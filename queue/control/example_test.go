package control_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
)

// A server runs the control socket beside its scheduler; postkit's
// postqueue, postsuper and postcat are clients of it.
func Example() {
	dir, _ := os.MkdirTemp("", "control-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)

	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	deliver := queue.DelivererFunc(func(_ context.Context, d *queue.Delivery) []queue.Result {
		res := make([]queue.Result, len(d.Recipients))
		for i := range res {
			res[i] = queue.Result{Outcome: queue.Delivered, Reason: "250 2.0.0 Ok"}
		}
		return res
	})
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: deliver, Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	defer s.Stop(ctx)

	srv := control.NewServer(q, s)
	srv.Logger = logger
	if err := srv.Listen(""); err != nil { // <queue>/control, mode 0600
		log.Fatal(err)
	}
	defer srv.Close()

	// A message cleanup put on hold.
	f, _ := q.Create(ctx, time.Time{})
	io.WriteString(f, "Subject: held\r\n\r\nbody\r\n")
	f.Commit(ctx, &cleanup.Envelope{Arrival: time.Now(), Sender: "alice@example.com", Hold: true,
		Recipients: []cleanup.Recipient{{Addr: "bob@example.org"}}})

	c := &control.Client{Path: control.SocketPath(q.Dir())}
	released, err := c.Admin(ctx, queue.AdminRelease, nil) // postsuper -H ALL
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("released:", len(released))
	s.Sync(ctx)                    // the scheduler took it at once
	c.Mailq(ctx, os.Stdout, false) // postqueue -p
	// Output:
	// released: 1
	// Mail queue is empty
}

package queue

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

// fill commits n one-recipient messages spread over dests destinations,
// from 16 goroutines so group commit keeps the setup short.
func fill(b *testing.B, q *Queue, n, dests int) {
	var wg sync.WaitGroup
	per := (n + 15) / 16
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g * per; i < min(n, (g+1)*per); i++ {
				env := &cleanup.Envelope{Sender: "alice@example.com",
					Recipients: []cleanup.Recipient{{Addr: fmt.Sprintf("u%d@d%d.example", i, i%dests)}}}
				commit(b, q, testContent, env)
			}
		}(g)
	}
	wg.Wait()
}

var noop = DelivererFunc(func(_ context.Context, d *Delivery) []Result {
	r := make([]Result, len(d.Recipients))
	for i := range r {
		r[i] = Result{Outcome: Delivered, Relay: "none", Reason: "ok"}
	}
	return r
})

// BenchmarkScheduler measures messages per second through the scheduler
// (incoming -> active -> delivery -> status record -> removed) with a
// no-op Deliverer, for 1 and 100 destinations. The baseline, measured in
// the same run, is the same store work done by a plain loop with no
// scheduling: Move to active, Read, MarkRecipients, Remove, from 16
// goroutines.
func BenchmarkScheduler(b *testing.B) {
	b.Run("baseline=store-ops", func(b *testing.B) {
		q := openTest(b, b.TempDir(), Options{})
		fill(b, q, b.N, 1)
		ids, err := q.List(Incoming)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ResetTimer()
		var wg sync.WaitGroup
		work := make(chan string)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range work {
					if err := q.Move(ctx, id, Active); err != nil {
						b.Error(err)
						return
					}
					m, err := q.Read(id)
					if err != nil {
						b.Error(err)
						return
					}
					m.Close()
					if err := q.MarkRecipients(ctx, id, []Status{{Rcpt: 0, Outcome: Delivered}}); err != nil {
						b.Error(err)
					}
					if err := q.Remove(ctx, id); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for _, e := range ids {
			work <- e.ID
		}
		close(work)
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	for _, dests := range []int{1, 100} {
		b.Run(fmt.Sprintf("dests=%d", dests), func(b *testing.B) {
			q := openTest(b, b.TempDir(), Options{})
			fill(b, q, b.N, dests)
			s, err := NewScheduler(q, SchedulerConfig{Deliverer: noop, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			s.Start()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := s.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Stop(ctx)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if left, _ := q.List(Incoming); len(left) != 0 {
				b.Fatalf("%d messages left", len(left))
			}
		})
	}
}

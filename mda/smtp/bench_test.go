package smtp_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/mda/smtp"
	"github.com/postkit-mail/postkit/queue"
)

// BenchmarkDeliverSink delivers one 4 KB message per iteration to Postfix's
// smtp-sink, over one cached session (RSET between messages) and with a
// new connection per message (smtp_connection_cache_time_limit < 0). Both
// run against the same sink in the same process, so their ratio is the
// figure to read on a noisy machine.
func BenchmarkDeliverSink(b *testing.B) {
	port := freePort(b, "127.0.0.2")
	startSink(b, fmt.Sprintf("127.0.0.2:%d", port))
	msg := testMsg + strings.Repeat("This line is part of a 4 KB body, dot-stuffed on the way out.\r\n", 64)
	// Warm the sink up, so the first sub-benchmark does not pay for it.
	warm, err := smtp.New(smtp.Config{MyHostname: "client.test", Port: port, CacheTimeLimit: -1}, smtp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for range 200 {
		warm.Deliver(context.Background(), delivery("[127.0.0.2]", "s@example.org", msg, "a@example.test"))
	}
	warm.Close()
	for _, bc := range []struct {
		name  string
		cache bool
	}{{"reuse", true}, {"new-connection", false}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := smtp.Config{MyHostname: "client.test", Port: port}
			if !bc.cache {
				cfg.CacheTimeLimit = -1
			}
			a, err := smtp.New(cfg, smtp.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				r := a.Deliver(context.Background(), delivery("[127.0.0.2]", "s@example.org", msg, "a@example.test"))
				if r[0].Outcome != queue.Delivered {
					b.Fatalf("%+v", r[0])
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkReuseRatio interleaves the two ways message by message (one
// delivery over the cached session, then one over a new connection) so
// both see the same machine load, and reports how many times faster the
// reused session is ("x-reuse").
func BenchmarkReuseRatio(b *testing.B) {
	port := freePort(b, "127.0.0.2")
	startSink(b, fmt.Sprintf("127.0.0.2:%d", port))
	msg := testMsg + strings.Repeat("This line is part of a 4 KB body, dot-stuffed on the way out.\r\n", 64)
	reuse, err := smtp.New(smtp.Config{MyHostname: "client.test", Port: port}, smtp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer reuse.Close()
	fresh, err := smtp.New(smtp.Config{MyHostname: "client.test", Port: port, CacheTimeLimit: -1}, smtp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var tReuse, tFresh time.Duration
	deliver := func(a *smtp.Agent, total *time.Duration) {
		start := time.Now()
		r := a.Deliver(context.Background(), delivery("[127.0.0.2]", "s@example.org", msg, "a@example.test"))
		*total += time.Since(start)
		if r[0].Outcome != queue.Delivered {
			b.Fatalf("%+v", r[0])
		}
	}
	for b.Loop() {
		deliver(reuse, &tReuse)
		deliver(fresh, &tFresh)
	}
	b.ReportMetric(float64(tFresh)/float64(tReuse), "x-reuse")
	b.ReportMetric(float64(b.N)/tReuse.Seconds(), "reuse-msgs/s")
	b.ReportMetric(float64(b.N)/tFresh.Seconds(), "new-msgs/s")
}

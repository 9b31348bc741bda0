package queue

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

// BenchmarkSubmitDeliver is a message's whole way through the queue, as
// examples/mailserver drives it: 8 goroutines commit 4 KB one-recipient
// messages while a running scheduler takes them into active, hands them
// to a Deliverer that reads the content, and removes them. ns/op is per
// message, until the last one is removed. path=strict is the earlier
// delivery path (every move synced, the status recorded before the
// removal, the content checked again per batch), measured in the same
// run as the baseline; syncs/msg counts every fsync and fdatasync
// (countFS) of the run, commits included.
func BenchmarkSubmitDeliver(b *testing.B) {
	content := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64)
	for _, group := range []bool{true, false} {
		for _, strict := range []bool{true, false} {
			name := fmt.Sprintf("group=%v/path=%s", map[bool]string{true: "on", false: "off"}[group],
				map[bool]string{true: "strict", false: "new"}[strict])
			b.Run(name, func(b *testing.B) {
				fsys := &countFS{}
				q, err := open(b.TempDir(), Options{Logger: quiet, NoGroupCommit: !group}, fsys)
				if err != nil {
					b.Fatal(err)
				}
				defer q.Close()
				q.strict = strict
				var delivered atomic.Int64
				d := DelivererFunc(func(_ context.Context, d *Delivery) []Result {
					rc, err := d.Open()
					if err == nil {
						_, err = io.Copy(io.Discard, rc)
						rc.Close()
					}
					if err != nil {
						b.Error(err)
					}
					delivered.Add(int64(len(d.Recipients)))
					return []Result{{Outcome: Delivered}}
				})
				s, err := NewScheduler(q, SchedulerConfig{Deliverer: d, Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				before := fsys.snapshot()
				b.ResetTimer()
				s.Start()
				var left atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				ctx := context.Background()
				for g := range 8 {
					wg.Go(func() {
						for n := left.Add(-1); n >= 0; n = left.Add(-1) {
							env := &cleanup.Envelope{Sender: "alice@example.com",
								Recipients: []cleanup.Recipient{{Addr: fmt.Sprintf("u%d@d%d.example", n, g)}}}
							f, err := q.Create(ctx, time.Time{})
							if err == nil {
								_, err = io.WriteString(f, content)
							}
							if err == nil {
								err = f.Commit(ctx, env)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
				if err := s.Sync(sctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				got := fsys.snapshot().minus(before)
				if err := s.Stop(sctx); err != nil {
					b.Fatal(err)
				}
				if n := delivered.Load(); n != int64(b.N) {
					b.Fatalf("delivered %d, want %d", n, b.N)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				b.ReportMetric(float64(got.dir+got.file+got.journal)/float64(b.N), "syncs/msg")
				b.ReportMetric(float64(got.dir)/float64(b.N), "dirsyncs/msg")
			})
		}
	}
}

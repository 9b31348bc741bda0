package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommit measures durable commits of a 4 KB message from 1, 8 and
// 32 concurrent committers, with group commit on and off (one file and one
// directory fsync per message) in the same run. Besides ns/op (per
// message) it reports msgs/s and the fsyncs per message, counting the
// checkpoint at Close that fsyncs the files the journal stood in for.
func BenchmarkCommit(b *testing.B) {
	content := []byte("Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64))
	benchCommit(b, content, false)
}

// BenchmarkCommitRemove is a message's whole stay in the queue when
// delivery is quick: Commit, then Remove once delivered.
func BenchmarkCommitRemove(b *testing.B) {
	content := []byte("Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64))
	benchCommit(b, content, true)
}

func benchCommit(b *testing.B, content []byte, remove bool) {
	for _, group := range []bool{true, false} {
		for _, conc := range []int{1, 8, 32} {
			name := fmt.Sprintf("group=%v/committers=%d", map[bool]string{true: "on", false: "off"}[group], conc)
			b.Run(name, func(b *testing.B) {
				q := openTest(b, b.TempDir(), Options{NoGroupCommit: !group})
				ctx := context.Background()
				env := testEnvelope(1)
				var left atomic.Int64
				left.Store(int64(b.N))
				before := q.Stats()
				b.SetBytes(int64(len(content)))
				b.ResetTimer()
				var wg sync.WaitGroup
				for range conc {
					wg.Go(func() {
						for left.Add(-1) >= 0 {
							f, err := q.Create(ctx, time.Time{})
							if err != nil {
								b.Error(err)
								return
							}
							f.Write(content)
							e := *env
							if err := f.Commit(ctx, &e); err != nil {
								b.Error(err)
								return
							}
							if remove {
								if err := q.Remove(ctx, f.ID()); err != nil {
									b.Error(err)
									return
								}
							}
						}
					})
				}
				wg.Wait()
				st := q.Stats()
				n := float64(st.Commits - before.Commits)
				// Close checkpoints: the file fsyncs the journal deferred
				// count against the run.
				q.Close()
				b.StopTimer()
				st = q.Stats()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				b.ReportMetric(float64(st.Fsyncs()-before.Fsyncs())/n, "fsyncs/msg")
				b.ReportMetric(float64(st.Commits-before.Commits)/float64(max(1, st.Batches-before.Batches)), "msgs/batch")
			})
		}
	}
}

// BenchmarkMarkRecipients measures a durable status update of a message
// with ten recipients, a few updates per message as deliveries make them.
func BenchmarkMarkRecipients(b *testing.B) {
	q := openTest(b, b.TempDir(), Options{})
	ctx := context.Background()
	var id string
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%5 == 0 {
			b.StopTimer()
			id = commit(b, q, testContent, testEnvelope(10))
			b.StartTimer()
		}
		if err := q.MarkRecipients(ctx, id, []Status{{Rcpt: i % 10, Outcome: Delayed, DSN: "4.4.1", Reason: "refused"}}); err != nil {
			b.Fatal(err)
		}
	}
}

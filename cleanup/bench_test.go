package cleanup

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/corpus"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/rewrite"
)

// BenchmarkCleanup runs SpamAssassin corpus messages through cleanup into
// an in-memory store. "copy" is the baseline: the same bytes written
// straight to the store. "plain" is cleanup with no rewriting and no
// checks (remote mail); "rewrite" adds canonical and virtual alias maps
// and the local header rewriting context (every address header parsed,
// missing headers added).
func BenchmarkCleanup(b *testing.B) {
	paths := corpus.SpamAssassin(b)
	if len(paths) > 300 {
		paths = paths[:300]
	}
	var msgs [][]byte
	var total int64
	for _, p := range paths {
		m := corpus.Message(b, p)
		msgs = append(msgs, m)
		total += int64(len(m))
	}
	rc := rewrite.Defaults("example.com", "example.com")
	rc.CanonicalMaps = maps.List{maps.StaticMap{"joe@example.com": "joe.public@example.com"}}
	rc.VirtualAliasMaps = maps.List{maps.StaticMap{"sales@example.com": "ann@example.com, bob@example.net"}}
	rw, err := rewrite.New(rc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	run := func(b *testing.B, cfg Config, local bool) {
		cfg.Logger = quiet
		st := &memStore{}
		c, err := New(cfg, st)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(total)
		b.ReportAllocs()
		defer reportCPU(b, total)()
		for b.Loop() {
			for _, msg := range msgs {
				m, err := c.Open(ctx, &Input{Sender: "joe@example.com", Recipients: []Recipient{{Addr: "sales@example.com"}},
					Local: local, Client: ClientInfo{Name: "remote.example", Addr: "192.0.2.7"}})
				if err != nil {
					b.Fatal(err)
				}
				for p := msg; len(p) > 0; {
					n := min(len(p), 32<<10)
					m.Write(p[:n])
					p = p[n:]
				}
				if err := m.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				st.msgs = nil
			}
		}
	}
	b.Run("copy", func(b *testing.B) {
		st := &memStore{}
		b.SetBytes(total)
		b.ReportAllocs()
		defer reportCPU(b, total)()
		for b.Loop() {
			for _, msg := range msgs {
				f, _ := st.Create(ctx, fixedTime)
				for p := msg; len(p) > 0; {
					n := min(len(p), 32<<10)
					f.Write(p[:n])
					p = p[n:]
				}
				f.Commit(ctx, &Envelope{})
				st.msgs = nil
			}
		}
	})
	b.Run("plain", func(b *testing.B) { run(b, Config{}, false) })
	b.Run("rewrite", func(b *testing.B) { run(b, Config{Rewriter: rw}, true) })
}

// reportCPU reports throughput per CPU second ("cpu-MB/s"), which does
// not depend on how busy the machine is, unlike the wall-clock MB/s.
func reportCPU(b *testing.B, bytesPerOp int64) func() {
	start := cpuTime()
	return func() {
		if d := cpuTime() - start; d > 0 {
			b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/d.Seconds(), "cpu-MB/s")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

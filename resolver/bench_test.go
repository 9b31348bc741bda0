package resolver_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/resolver"
	"github.com/postkit-mail/postkit/resolver/dnstest"
)

// BenchmarkCachedLookup compares a cache hit with the least a cache can
// cost: a mutex-guarded Go map returning a copy of the slice.
func BenchmarkCachedLookup(b *testing.B) {
	s := newServer(b)
	ctx := context.Background()
	b.Run("client", func(b *testing.B) {
		r := s.Resolver()
		if _, err := r.LookupA(ctx, "mx2.example.test"); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.LookupA(ctx, "mx2.example.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		var mu sync.Mutex
		m := map[string][]netip.Addr{"mx2.example.test": {netip.MustParseAddr("192.0.2.26"), netip.MustParseAddr("192.0.2.27")}}
		b.ReportAllocs()
		for b.Loop() {
			mu.Lock()
			a, ok := m["mx2.example.test"]
			mu.Unlock()
			if !ok {
				b.Fatal("not found")
			}
			_ = slices.Clone(a)
		}
	})
	b.Run("client-parallel", func(b *testing.B) {
		r := s.Resolver()
		if _, err := r.LookupA(ctx, "mx2.example.test"); err != nil {
			b.Fatal(err)
		}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.LookupA(ctx, "mx2.example.test")
			}
		})
	})
}

// BenchmarkUncachedQuery is one UDP round trip to the in-process server,
// with the standard library's resolver as the baseline.
func BenchmarkUncachedQuery(b *testing.B) {
	s := newServer(b)
	ctx := context.Background()
	b.Run("client", func(b *testing.B) {
		r := s.Resolver(dnstest.NoCache())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.LookupA(ctx, "mx2.example.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		std := stdResolver(s)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := std.LookupNetIP(ctx, "ip4", "mx2.example.test."); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDNSBLFourLists checks one client address against four DNSBLs on
// a server that answers after 20 ms, first one list after the other, then
// all four at once, and reports both and their ratio. Every iteration
// uses a new client address, so nothing comes from the cache.
func BenchmarkDNSBLFourLists(b *testing.B) {
	zones := []string{"zen.dnsbl.test", "bl.one.test", "bl.two.test", "bl.three.test"}
	var text string
	for _, z := range zones {
		text += z + ". SOA ns." + z + ". hostmaster." + z + ". 1 3600 600 86400 60\n"
		text += "2.0.0.127." + z + ". A 127.0.0.2\n"
	}
	s := dnstest.New(b, text)
	s.Delay(20 * time.Millisecond)
	r := s.Resolver()
	ctx := context.Background()
	next := netip.MustParseAddr("10.0.0.1")
	check := func(addr netip.Addr, concurrent bool) {
		var wg sync.WaitGroup
		for _, z := range zones {
			lookup := func() {
				if _, err := r.LookupA(ctx, resolver.DNSBLQuery(addr, z)); err != nil && !resolver.IsNotFound(err) {
					panic(fmt.Sprint(err))
				}
			}
			if concurrent {
				wg.Go(lookup)
			} else {
				lookup()
			}
		}
		wg.Wait()
	}
	var seq, conc time.Duration
	for b.Loop() {
		start := time.Now()
		check(next, false)
		seq += time.Since(start)
		next = next.Next()
		start = time.Now()
		check(next, true)
		conc += time.Since(start)
		next = next.Next()
	}
	b.ReportMetric(float64(seq.Milliseconds())/float64(b.N), "seq-ms/op")
	b.ReportMetric(float64(conc.Milliseconds())/float64(b.N), "conc-ms/op")
	b.ReportMetric(float64(seq)/float64(conc), "seq/conc")
}

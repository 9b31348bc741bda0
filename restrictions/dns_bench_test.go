package restrictions

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/resolver/dnstest"
)

// benchZone lists 127.0.0.2 in the fourth of four lists only.
const benchZone = `
2.0.0.127.list4.example. A   127.0.0.2
2.0.0.127.list4.example. TXT "listed in list4"
`

const benchLists = "reject_rbl_client list1.example, reject_rbl_client list2.example, " +
	"reject_rbl_client list3.example, reject_rbl_client list4.example"

// BenchmarkDNSBL checks a client against four DNSBLs served by a DNS
// server that answers after 20 ms: without caches (ours flushed before
// each check, the resolver's off), once with the lookups started
// together and once one after the other; then from the cache. A client
// listed nowhere costs one round trip concurrently and four in turn; one
// listed in the last list two (A, then TXT) against five.
func BenchmarkDNSBL(b *testing.B) {
	srv, err := dnstest.Start(benchZone)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.Delay(20 * time.Millisecond)
	ctx := context.Background()
	newChecker := func(b *testing.B, sequential bool) *Checker {
		cfg := DefaultConfig()
		cfg.ClientRestrictions = benchLists
		cfg.DNS.Resolver = srv.Resolver(dnstest.NoCache())
		c, err := New(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		c.dns.sequential = sequential
		return c
	}
	clients := []struct{ name, addr, reply string }{
		{"unlisted", "127.0.0.9", ""},
		{"listed", "127.0.0.2", "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using list4.example; listed in list4"},
	}
	for _, cl := range clients {
		s := &Snapshot{ClientAddr: netip.MustParseAddr(cl.addr), ClientName: "client.example"}
		for _, mode := range []struct {
			name       string
			sequential bool
		}{{"concurrent", false}, {"sequential", true}} {
			b.Run(cl.name+"/uncached/"+mode.name, func(b *testing.B) {
				c := newChecker(b, mode.sequential)
				for b.Loop() {
					c.dns.cache.flush()
					if got := c.Check(ctx, StageClient, s).Reply.String(); got != cl.reply {
						b.Fatalf("reply %q, want %q", got, cl.reply)
					}
				}
			})
		}
		b.Run(cl.name+"/cached", func(b *testing.B) {
			c := newChecker(b, false)
			c.Check(ctx, StageClient, s)
			for b.Loop() {
				if got := c.Check(ctx, StageClient, s).Reply.String(); got != cl.reply {
					b.Fatalf("reply %q, want %q", got, cl.reply)
				}
			}
		})
	}
}

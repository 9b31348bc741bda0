package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postkit-mail/postkit/resolver"
	"github.com/postkit-mail/postkit/resolver/dnstest"
)

// testZone is the data most tests here share.
const testZone = `
$ORIGIN example.test.
$TTL 300
@         SOA   ns1 hostmaster 1 3600 600 86400 120
@         NS    ns1
@         NS    NS2.Example.Test.
@         MX    10 mx1
@         MX    20 MX2.Example.Test.
@         TXT   "v=spf1 -all"
@         TXT   "part one " "part two"
quote     TXT   "say \"hi\" \\ back"
bin       TXT   "caf\195\169 \009tab"
mx1       A     192.0.2.25
mx1       AAAA  2001:db8::25
mx2       A     192.0.2.26
mx2       A     192.0.2.27
www       CNAME mx1
alias2    CNAME www
dangling  CNAME nowhere.example.test.
txtonly   TXT   "only txt"
null      MX    0 .
loop1     CNAME loop2
loop2     CNAME loop1
deep.sub  A     192.0.2.9
25.2.0.192.in-addr.arpa. PTR mx1
25.2.0.192.in-addr.arpa. PTR MAIL.Example.Test.
$ORIGIN zen.dnsbl.test.
@         SOA   ns hostmaster 1 3600 600 86400 60
2.0.0.127 A     127.0.0.2
2.0.0.127 TXT   "listed: see https://dnsbl.test/?127.0.0.2"
`

// v6Addr has a PTR record added by newServer.
var v6Addr = netip.MustParseAddr("2001:db8::25")

func newServer(t testing.TB) *dnstest.Server {
	t.Helper()
	s := dnstest.New(t, testZone)
	rev, err := dns.ReverseAddr(v6Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rev + " 300 IN PTR mx1.example.test."); err != nil {
		t.Fatal(err)
	}
	return s
}

// stdResolver is the standard library's DNS client pointed at s: an
// independent implementation to compare answers and error classes with.
func stdResolver(s *dnstest.Server) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr())
		},
	}
}

func TestLookupTypesAgainstStdlib(t *testing.T) {
	s := newServer(t)
	r := s.Resolver()
	std := stdResolver(s)
	ctx := context.Background()

	t.Run("MX", func(t *testing.T) {
		got, err := r.LookupMX(ctx, "Example.Test")
		if err != nil {
			t.Fatal(err)
		}
		stdMX, err := std.LookupMX(ctx, "example.test.")
		if err != nil {
			t.Fatal(err)
		}
		var want []resolver.MX
		for _, m := range stdMX {
			want = append(want, resolver.MX{Host: strings.ToLower(strings.TrimSuffix(m.Host, ".")), Pref: m.Pref})
		}
		sortMX(got)
		sortMX(want)
		if !slices.Equal(got, want) || len(got) != 2 || got[1].Host != "mx2.example.test" {
			t.Errorf("MX = %v, stdlib says %v", got, want)
		}
	})
	t.Run("A", func(t *testing.T) {
		got, err := r.LookupA(ctx, "mx2.example.test")
		if err != nil {
			t.Fatal(err)
		}
		want, err := std.LookupNetIP(ctx, "ip4", "mx2.example.test.")
		if err != nil {
			t.Fatal(err)
		}
		sortAddrs(got)
		sortAddrs(want)
		if !slices.Equal(got, want) || len(got) != 2 || !got[0].Is4() {
			t.Errorf("A = %v, stdlib says %v", got, want)
		}
	})
	t.Run("AAAA", func(t *testing.T) {
		got, err := r.LookupAAAA(ctx, "mx1.example.test.")
		if err != nil {
			t.Fatal(err)
		}
		want, err := std.LookupNetIP(ctx, "ip6", "mx1.example.test.")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) || len(got) != 1 || got[0] != v6Addr {
			t.Errorf("AAAA = %v, stdlib says %v", got, want)
		}
	})
	t.Run("PTR", func(t *testing.T) {
		for _, a := range []string{"192.0.2.25", "::ffff:192.0.2.25", v6Addr.String()} {
			addr := netip.MustParseAddr(a)
			got, err := r.LookupPTR(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			stdNames, err := std.LookupAddr(ctx, addr.Unmap().String())
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, n := range stdNames {
				want = append(want, strings.ToLower(strings.TrimSuffix(n, ".")))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("PTR %s = %q, stdlib says %q", a, got, want)
			}
		}
	})
	t.Run("TXT", func(t *testing.T) {
		for _, name := range []string{"example.test", "quote.example.test", "bin.example.test", "2.0.0.127.zen.dnsbl.test"} {
			got, err := r.LookupTXT(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			want, err := std.LookupTXT(ctx, name+".")
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("TXT %s = %q, stdlib says %q", name, got, want)
			}
		}
		got, _ := r.LookupTXT(ctx, "quote.example.test")
		if len(got) != 1 || got[0] != `say "hi" \ back` {
			t.Errorf("TXT quote = %q, want the unescaped bytes", got)
		}
		got, _ = r.LookupTXT(ctx, "bin.example.test")
		if len(got) != 1 || got[0] != "café \ttab" {
			t.Errorf("TXT bin = %q, want the unescaped bytes", got)
		}
	})
	t.Run("NS", func(t *testing.T) {
		got, err := r.LookupNS(ctx, "example.test")
		if err != nil {
			t.Fatal(err)
		}
		stdNS, err := std.LookupNS(ctx, "example.test.")
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, n := range stdNS {
			want = append(want, strings.ToLower(strings.TrimSuffix(n.Host, ".")))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) || !slices.Contains(got, "ns2.example.test") {
			t.Errorf("NS = %q, stdlib says %q", got, want)
		}
	})
}

func TestNullMX(t *testing.T) {
	s := newServer(t)
	got, err := s.Resolver().LookupMX(context.Background(), "null.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := []resolver.MX{{Host: "", Pref: 0}}; !slices.Equal(got, want) {
		t.Errorf("null MX = %#v, want %#v", got, want)
	}
}

func TestCNAMEChains(t *testing.T) {
	s := newServer(t)
	r := s.Resolver(dnstest.NoCache())
	ctx := context.Background()
	for _, name := range []string{"www.example.test", "alias2.example.test"} {
		got, err := r.LookupA(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := []netip.Addr{netip.MustParseAddr("192.0.2.25")}; !slices.Equal(got, want) {
			t.Errorf("A %s = %v, want %v", name, got, want)
		}
	}
	// A CNAME whose target has no record of the type asked is NODATA;
	// one whose target does not exist is NXDOMAIN (RFC 6604 section 3).
	if _, err := r.LookupMX(ctx, "www.example.test"); !resolver.IsNotFound(err) || resolver.IsNXDomain(err) {
		t.Errorf("MX via CNAME to a host without MX: err = %v, want NODATA", err)
	}
	if _, err := r.LookupA(ctx, "dangling.example.test"); !resolver.IsNXDomain(err) {
		t.Errorf("A via dangling CNAME: err = %v, want NXDOMAIN", err)
	}
	if _, err := r.LookupA(ctx, "loop1.example.test"); !resolver.IsTemporary(err) || resolver.IsNotFound(err) {
		t.Errorf("A via a CNAME loop: err = %v, want a temporary error", err)
	}
}

// errorClass says which of the package's predicates hold for err.
func errorClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case resolver.IsNXDomain(err) && resolver.IsNotFound(err):
		return "nxdomain"
	case resolver.IsNotFound(err):
		return "nodata"
	case resolver.IsTemporary(err):
		return "temporary"
	}
	return "other: " + err.Error()
}

func TestErrorClasses(t *testing.T) {
	s := newServer(t)
	s.ServFail("broken.example.test")
	s.Refuse("refused.example.test")
	s.Silent("silent.example.test")
	r := s.Resolver(dnstest.NoCache(), dnstest.Timeout(50*time.Millisecond))
	std := stdResolver(s)
	ctx := context.Background()
	tests := []struct {
		name    string
		want    string
		timeout bool
	}{
		{"nosuch.example.test", "nxdomain", false},
		{"nosuch.zen.dnsbl.test", "nxdomain", false},
		{"outside.invalid", "nxdomain", false},
		{"txtonly.example.test", "nodata", false},
		{"sub.example.test", "nodata", false}, // empty non-terminal (RFC 8020)
		{"broken.example.test", "temporary", false},
		{"refused.example.test", "temporary", false},
		{"silent.example.test", "temporary", true},
	}
	for _, tt := range tests {
		_, err := r.LookupA(ctx, tt.name)
		if got := errorClass(err); got != tt.want {
			t.Errorf("A %s: %s (%v), want %s", tt.name, got, err, tt.want)
		}
		var de *net.DNSError
		if !errors.As(err, &de) {
			t.Fatalf("A %s: error %T is not a *net.DNSError", tt.name, err)
		}
		if de.Name != tt.name || de.Server != s.Addr() || de.IsTimeout != tt.timeout {
			t.Errorf("A %s: DNSError %+v, want Name %q, Server %q, IsTimeout %v", tt.name, de, tt.name, s.Addr(), tt.timeout)
		}
		if tt.timeout || tt.name == "refused.example.test" {
			// The standard library waits 5 s a try, and counts
			// REFUSED as permanent; glibc's res_send moves on to the
			// next server and, when none is left, its callers (and so
			// Postfix) see TRY_AGAIN.
			continue
		}
		// The standard library's resolver must see the same class in
		// what the server sent (it does not tell NXDOMAIN from NODATA).
		_, stdErr := std.LookupNetIP(ctx, "ip4", tt.name+".")
		var sde *net.DNSError
		if !errors.As(stdErr, &sde) {
			t.Fatalf("stdlib A %s: %v", tt.name, stdErr)
		}
		if sde.IsNotFound != strings.HasPrefix(tt.want, "n") || sde.Temporary() != (tt.want == "temporary") {
			t.Errorf("stdlib A %s: %+v, want the class %s", tt.name, sde, tt.want)
		}
	}
	// A hit in a DNSBL and its reason.
	ip := netip.MustParseAddr("127.0.0.2")
	addrs, err := r.LookupA(ctx, resolver.DNSBLQuery(ip, "zen.dnsbl.test"))
	if err != nil || len(addrs) != 1 || addrs[0] != ip {
		t.Errorf("DNSBL hit: %v, %v", addrs, err)
	}
	if n := s.Count("silent.example.test", "A"); n != resolver.DefaultAttempts {
		t.Errorf("silent name was asked %d times, want one a try (%d)", n, resolver.DefaultAttempts)
	}
}

func TestMalformedNamesAreNotQueried(t *testing.T) {
	s := newServer(t)
	r := s.Resolver()
	ctx := context.Background()
	long := strings.Repeat("a", 64) + ".example.test"
	huge := strings.Repeat("abcdefghi.", 26) + "test" // 264 characters
	for _, name := range []string{"", ".", "a..b", long, huge, "-a.example.test", "a-.example.test",
		"1.2.3.4", "a b.example.test", "a\\.b.example.test", "ex\u00e4mple.test", "a.example.test.."} {
		_, err := r.LookupMX(ctx, name)
		if !resolver.IsNotFound(err) || !resolver.IsNXDomain(err) || resolver.IsTemporary(err) {
			t.Errorf("MX %q: err = %v, want not found (NXDOMAIN)", name, err)
		}
	}
	if q := s.Queries(); len(q) != 0 {
		t.Errorf("malformed names reached the server: %v", q)
	}
	// The limits themselves are fine.
	ok63 := strings.Repeat("a", 63) + ".example.test"
	if _, err := r.LookupMX(ctx, ok63); !resolver.IsNXDomain(err) || s.Count(ok63, "MX") != 1 {
		t.Errorf("MX with a 63-character label: %v, want a query and NXDOMAIN", err)
	}
}

func TestTCPFallback(t *testing.T) {
	s := newServer(t)
	r := s.Resolver(dnstest.NoCache())
	ctx := context.Background()

	s.TruncateUDP("mx2.example.test")
	got, err := r.LookupA(ctx, "mx2.example.test")
	if err != nil || len(got) != 2 {
		t.Fatalf("A after truncation: %v, %v", got, err)
	}
	want := []dnstest.Query{
		{Name: "mx2.example.test", Type: "A", Proto: "udp"},
		{Name: "mx2.example.test", Type: "A", Proto: "tcp"},
	}
	if q := s.Queries(); !slices.Equal(q, want) {
		t.Errorf("queries = %v, want %v", q, want)
	}

	// An answer larger than the 4096 bytes the client offers over UDP.
	var big strings.Builder
	for i := range 40 {
		fmt.Fprintf(&big, "big.example.test. 300 IN TXT \"%03d %s\"\n", i, strings.Repeat("x", 200))
	}
	if err := s.Add(big.String()); err != nil {
		t.Fatal(err)
	}
	s.ResetQueries()
	txt, err := r.LookupTXT(ctx, "big.example.test")
	if err != nil || len(txt) != 40 {
		t.Fatalf("big TXT: %d records, %v", len(txt), err)
	}
	if q := s.Queries(); len(q) != 2 || q[1].Proto != "tcp" {
		t.Errorf("big TXT queries = %v, want UDP then TCP", q)
	}
}

func TestTCPOnly(t *testing.T) {
	s := newServer(t)
	r, err := resolver.New(resolver.Config{Servers: []string{s.Addr()}, TCP: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LookupMX(context.Background(), "example.test"); err != nil {
		t.Fatal(err)
	}
	if q := s.Queries(); len(q) != 1 || q[0].Proto != "tcp" {
		t.Errorf("queries = %v, want one over TCP", q)
	}
}

func TestRetryNextServer(t *testing.T) {
	ctx := context.Background()
	for _, fault := range []string{"silent", "servfail", "refused", "closed"} {
		t.Run(fault, func(t *testing.T) {
			bad, good := newServer(t), newServer(t)
			switch fault {
			case "silent":
				bad.Silent("*")
			case "servfail":
				bad.ServFail("*")
			case "refused":
				bad.Refuse("*")
			case "closed":
				bad.Close()
			}
			r, err := resolver.New(resolver.Config{
				Servers:  []string{bad.Addr(), good.Addr()},
				Timeout:  100 * time.Millisecond,
				Attempts: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.LookupA(ctx, "mx1.example.test")
			if err != nil || len(got) != 1 {
				t.Fatalf("A = %v, %v; want the second server's answer", got, err)
			}
			if fault != "closed" && bad.Count("mx1.example.test", "A") != 1 {
				t.Errorf("first server asked %d times, want 1", bad.Count("mx1.example.test", "A"))
			}
			if good.Count("mx1.example.test", "A") != 1 {
				t.Errorf("second server asked %d times, want 1", good.Count("mx1.example.test", "A"))
			}
			if st := r.Stats(); st.Queries != 2 {
				t.Errorf("Stats.Queries = %d, want 2", st.Queries)
			}
		})
	}
}

func TestAttemptsAndRotate(t *testing.T) {
	a, b := newServer(t), newServer(t)
	a.ServFail("*")
	b.ServFail("*")
	r, err := resolver.New(resolver.Config{Servers: []string{a.Addr(), b.Addr()}, Attempts: 3, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.LookupA(context.Background(), "mx1.example.test")
	if !resolver.IsTemporary(err) {
		t.Fatalf("err = %v, want temporary", err)
	}
	if a.Count("mx1.example.test", "A") != 3 || b.Count("mx1.example.test", "A") != 3 {
		t.Errorf("asked %d and %d times, want 3 each", a.Count("mx1.example.test", "A"), b.Count("mx1.example.test", "A"))
	}

	// With Rotate, lookups start at the servers in turn.
	a.Restore()
	b.Restore()
	a.ResetQueries()
	b.ResetQueries()
	r, err = resolver.New(resolver.Config{Servers: []string{a.Addr(), b.Addr()}, Rotate: true, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := r.LookupA(context.Background(), "mx1.example.test"); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.Queries()) != 2 || len(b.Queries()) != 2 {
		t.Errorf("with Rotate: %d and %d queries, want 2 each", len(a.Queries()), len(b.Queries()))
	}
}

// clock is a settable time for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestPositiveCacheTTL(t *testing.T) {
	s := newServer(t)
	if err := s.Add("ttl.example.test. 100 IN A 192.0.2.1\nttl.example.test. 40 IN A 192.0.2.2"); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	r := s.Resolver(dnstest.Clock(clk.Now))
	ctx := context.Background()
	lookup := func() {
		t.Helper()
		if got, err := r.LookupA(ctx, "TTL.example.test"); err != nil || len(got) != 2 {
			t.Fatalf("A = %v, %v", got, err)
		}
	}
	lookup()
	lookup()
	if n := s.Count("ttl.example.test", "A"); n != 1 {
		t.Fatalf("asked %d times within the TTL, want 1", n)
	}
	// The least TTL of the RRset counts.
	clk.Advance(39 * time.Second)
	lookup()
	if n := s.Count("ttl.example.test", "A"); n != 1 {
		t.Fatalf("asked %d times after 39 s, want 1", n)
	}
	clk.Advance(time.Second)
	lookup()
	if n := s.Count("ttl.example.test", "A"); n != 2 {
		t.Fatalf("asked %d times after 40 s, want 2", n)
	}
	if st := r.Stats(); st.CacheHits != 2 || st.Lookups != 4 || st.Queries != 2 {
		t.Errorf("Stats = %+v", st)
	}

	// The TTL of a CNAME on the way counts too.
	if err := s.Add("short.example.test. 5 IN CNAME ttl.example.test."); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.LookupA(ctx, "short.example.test"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(5 * time.Second)
	}
	if n := s.Count("short.example.test", "A"); n != 2 {
		t.Errorf("CNAME with TTL 5: asked %d times in 10 s, want 2", n)
	}

	// MaxTTL caps the TTL.
	capped := s.Resolver(dnstest.Clock(clk.Now), func(c *resolver.Config) { c.MaxTTL = 10 * time.Second })
	s.ResetQueries()
	for range 3 {
		if _, err := capped.LookupA(ctx, "mx1.example.test"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(6 * time.Second)
	}
	if n := s.Count("mx1.example.test", "A"); n != 2 {
		t.Errorf("MaxTTL 10 s: asked %d times in 18 s, want 2", n)
	}
}

func TestNegativeCache(t *testing.T) {
	s := newServer(t)
	clk := newClock()
	r := s.Resolver(dnstest.Clock(clk.Now))
	ctx := context.Background()
	ask := func(name, qtype string) (error, int) {
		t.Helper()
		var err error
		switch qtype {
		case "A":
			_, err = r.LookupA(ctx, name)
		case "MX":
			_, err = r.LookupMX(ctx, name)
		}
		return err, s.Count(name, qtype)
	}
	// example.test's SOA has TTL 300 and MINIMUM 120: 120 s (RFC 2308 section 5).
	for _, q := range []struct{ name, qtype string }{{"nosuch.example.test", "A"}, {"txtonly.example.test", "MX"}} {
		err, _ := ask(q.name, q.qtype)
		clk.Advance(119 * time.Second)
		err2, n := ask(q.name, q.qtype)
		if errorClass(err) != errorClass(err2) || n != 1 {
			t.Errorf("%s %s: %v then %v, %d queries; want the cached negative answer", q.qtype, q.name, err, err2, n)
		}
		clk.Advance(time.Second)
		if _, n := ask(q.name, q.qtype); n != 2 {
			t.Errorf("%s %s: %d queries after 120 s, want 2", q.qtype, q.name, n)
		}
	}
	// The cached NXDOMAIN is still an NXDOMAIN; the cached NODATA a NODATA.
	if err, _ := ask("nosuch.example.test", "A"); !resolver.IsNXDomain(err) {
		t.Errorf("cached NXDOMAIN: %v", err)
	}
	if err, _ := ask("txtonly.example.test", "MX"); !resolver.IsNotFound(err) || resolver.IsNXDomain(err) {
		t.Errorf("cached NODATA: %v", err)
	}

	// NegativeTTL caps it; a negative value turns it off.
	for _, tc := range []struct {
		cap  time.Duration
		want int
	}{{30 * time.Second, 2}, {-1, 3}} {
		r := s.Resolver(dnstest.Clock(clk.Now), func(c *resolver.Config) { c.NegativeTTL = tc.cap })
		s.ResetQueries()
		for range 3 {
			r.LookupA(ctx, "other.example.test")
			clk.Advance(20 * time.Second)
		}
		if n := s.Count("other.example.test", "A"); n != tc.want {
			t.Errorf("NegativeTTL %v: %d queries in 60 s, want %d", tc.cap, n, tc.want)
		}
	}
}

func TestFailuresCachedOnlyWhenAsked(t *testing.T) {
	s := newServer(t)
	clk := newClock()
	ctx := context.Background()
	s.ServFail("mx1.example.test")
	r := s.Resolver(dnstest.Clock(clk.Now), func(c *resolver.Config) { c.Attempts = 1 })
	if _, err := r.LookupA(ctx, "mx1.example.test"); !resolver.IsTemporary(err) {
		t.Fatalf("err = %v, want temporary", err)
	}
	s.Restore()
	if _, err := r.LookupA(ctx, "mx1.example.test"); err != nil {
		t.Fatalf("after the failure passed: %v", err)
	}

	s.ServFail("mx2.example.test")
	r = s.Resolver(dnstest.Clock(clk.Now), func(c *resolver.Config) { c.Attempts = 1; c.FailureTTL = 2 * time.Second })
	r.LookupA(ctx, "mx2.example.test")
	s.Restore()
	if _, err := r.LookupA(ctx, "mx2.example.test"); !resolver.IsTemporary(err) {
		t.Errorf("within FailureTTL: err = %v, want the cached failure", err)
	}
	clk.Advance(2 * time.Second)
	if _, err := r.LookupA(ctx, "mx2.example.test"); err != nil {
		t.Errorf("after FailureTTL: %v", err)
	}
}

func TestLRUBound(t *testing.T) {
	s := newServer(t)
	r := s.Resolver(func(c *resolver.Config) { c.CacheSize = 2 })
	ctx := context.Background()
	for _, name := range []string{"mx1", "mx2", "mx1", "www"} { // www evicts mx2, the least recently used
		if _, err := r.LookupA(ctx, name+".example.test"); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.Stats(); st.Entries != 2 || st.CacheHits != 1 {
		t.Fatalf("Stats = %+v, want 2 entries and 1 hit", st)
	}
	for _, name := range []string{"mx1", "www", "mx2"} {
		r.LookupA(ctx, name+".example.test")
	}
	want := map[string]int{"mx1": 1, "www": 1, "mx2": 2}
	for name, n := range want {
		if got := s.Count(name+".example.test", "A"); got != n {
			t.Errorf("%s asked %d times, want %d", name, got, n)
		}
	}
	// Flush empties it.
	r.Flush()
	if st := r.Stats(); st.Entries != 0 {
		t.Errorf("after Flush: %d entries", st.Entries)
	}
}

func TestInFlightDedupe(t *testing.T) {
	s := newServer(t)
	s.Delay(100 * time.Millisecond)
	r := s.Resolver(dnstest.NoCache())
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			mx, err := r.LookupMX(context.Background(), "example.test")
			if err == nil && len(mx) != 2 {
				err = fmt.Errorf("MX = %v", mx)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if q := s.Count("example.test", "MX"); q != 1 {
		t.Errorf("%d identical concurrent lookups sent %d queries, want 1", n, q)
	}
	if st := r.Stats(); st.Shared+1 != n {
		t.Errorf("Stats.Shared = %d, want %d", st.Shared, n-1)
	}
}

func TestContextCancel(t *testing.T) {
	s := newServer(t)
	s.Silent("silent.example.test")
	r := s.Resolver(dnstest.Timeout(10 * time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.LookupA(ctx, "silent.example.test")
	if !errors.Is(err, context.DeadlineExceeded) || !resolver.IsTemporary(err) {
		t.Errorf("err = %v, want a temporary error wrapping context.DeadlineExceeded", err)
	}
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsTimeout {
		t.Errorf("err = %#v, want a *net.DNSError with IsTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("lookup returned after %v, not when the context expired", d)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := r.LookupA(ctx, "mx1.example.test"); !errors.Is(err, context.Canceled) {
		t.Errorf("with a cancelled context: err = %v", err)
	}

	// One caller giving up does not fail another waiting for the same
	// query, and the query is not sent again.
	s.DelayName(300*time.Millisecond, "mx2.example.test")
	var got []netip.Addr
	var err2 error
	var wg sync.WaitGroup
	wg.Go(func() { got, err2 = r.LookupA(context.Background(), "mx2.example.test") })
	waitFor(t, func() bool { return s.Count("mx2.example.test", "A") == 1 })
	ctx1, cancel1 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.LookupA(ctx1, "mx2.example.test")
		done <- err
	}()
	waitFor(t, func() bool { return r.Stats().Shared == 1 })
	cancel1()
	if err := <-done; !errors.Is(err, context.Canceled) || !resolver.IsTemporary(err) {
		t.Errorf("cancelled caller: %v, want a temporary error wrapping context.Canceled", err)
	}
	wg.Wait()
	if err2 != nil || len(got) != 2 {
		t.Errorf("the other caller: %v, %v", got, err2)
	}
	if n := s.Count("mx2.example.test", "A"); n != 1 {
		t.Errorf("mx2 asked %d times, want 1", n)
	}
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
	}
}

func TestEDNSFormErrFallback(t *testing.T) {
	// A server from before EDNS0 answers FORMERR to a query with an OPT
	// record (RFC 6891 section 7); the client asks again without one.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sawOPT []bool
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			mu.Lock()
			sawOPT = append(sawOPT, req.IsEdns0() != nil)
			mu.Unlock()
			if req.IsEdns0() != nil {
				m.SetRcode(req, dns.RcodeFormatError)
			} else {
				m.SetReply(req)
				rr, _ := dns.NewRR(req.Question[0].Name + " 60 IN A 192.0.2.1")
				m.Answer = append(m.Answer, rr)
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })

	r, err := resolver.New(resolver.Config{Servers: []string{pc.LocalAddr().String()}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.LookupA(context.Background(), "old.example.test")
	if err != nil || len(got) != 1 {
		t.Fatalf("A = %v, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sawOPT, []bool{true, false}) {
		t.Errorf("queries with OPT: %v, want [true false]", sawOPT)
	}
}

func TestNewRejectsBadServers(t *testing.T) {
	for _, servers := range [][]string{nil, {"dns.example.com"}, {"192.0.2.1:domain"}, {"[192.0.2.1]"}} {
		if _, err := resolver.New(resolver.Config{Servers: servers}); err == nil {
			t.Errorf("New(%q) succeeded", servers)
		}
	}
	for _, srv := range []string{"192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:53"} {
		if _, err := resolver.New(resolver.Config{Servers: []string{srv}}); err != nil {
			t.Errorf("New(%q): %v", srv, err)
		}
	}
}

func TestResultsAreCopies(t *testing.T) {
	s := newServer(t)
	r := s.Resolver()
	ctx := context.Background()
	mx, _ := r.LookupMX(ctx, "example.test")
	mx[0].Host = "changed"
	mx2, _ := r.LookupMX(ctx, "example.test")
	if slices.ContainsFunc(mx2, func(m resolver.MX) bool { return m.Host == "changed" }) {
		t.Error("changing a returned slice changed the cache")
	}
}

func sortMX(m []resolver.MX) {
	slices.SortFunc(m, func(a, b resolver.MX) int {
		if a.Pref != b.Pref {
			return int(a.Pref) - int(b.Pref)
		}
		return strings.Compare(a.Host, b.Host)
	})
}

func sortAddrs(a []netip.Addr) { slices.SortFunc(a, netip.Addr.Compare) }

package dnstest_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postkit-mail/postkit/resolver"
	"github.com/postkit-mail/postkit/resolver/dnstest"
)

const zone = `
$ORIGIN example.test.
$TTL 120
@        SOA  ns hostmaster 7 3600 600 86400 30
@        MX   10 mx
mx       A    192.0.2.25
www      CNAME mx
a.b.c    TXT  "deep"
*.wild   A    192.0.2.99
$ORIGIN zen.dnsbl.test.
*        A    127.0.0.2
`

// ask sends one raw question over proto and returns the reply, so tests can
// check what is on the wire.
func ask(t *testing.T, s *dnstest.Server, proto, name string, qtype uint16, edns bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns {
		m.SetEdns0(4096, false)
	}
	c := &dns.Client{Net: proto, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, proto, err)
	}
	return r
}

func TestAuthoritativeAnswers(t *testing.T) {
	s := dnstest.New(t, zone)
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers []string
		soa     string // owner of the SOA in the authority section, "" for none
	}{
		{"example.test", dns.TypeMX, dns.RcodeSuccess, []string{"example.test.\t120\tIN\tMX\t10 mx.example.test."}, ""},
		{"MX.Example.Test", dns.TypeA, dns.RcodeSuccess, []string{"mx.example.test.\t120\tIN\tA\t192.0.2.25"}, ""},
		{"www.example.test", dns.TypeA, dns.RcodeSuccess, []string{
			"www.example.test.\t120\tIN\tCNAME\tmx.example.test.",
			"mx.example.test.\t120\tIN\tA\t192.0.2.25"}, ""},
		{"www.example.test", dns.TypeCNAME, dns.RcodeSuccess, []string{"www.example.test.\t120\tIN\tCNAME\tmx.example.test."}, ""},
		{"www.example.test", dns.TypeMX, dns.RcodeSuccess, []string{"www.example.test.\t120\tIN\tCNAME\tmx.example.test."}, "example.test."},
		{"mx.example.test", dns.TypeMX, dns.RcodeSuccess, nil, "example.test."},
		{"b.c.example.test", dns.TypeTXT, dns.RcodeSuccess, nil, "example.test."}, // empty non-terminal
		{"x.b.c.example.test", dns.TypeTXT, dns.RcodeNameError, nil, "example.test."},
		{"nosuch.example.test", dns.TypeA, dns.RcodeNameError, nil, "example.test."},
		{"x.y.wild.example.test", dns.TypeA, dns.RcodeSuccess, []string{"x.y.wild.example.test.\t120\tIN\tA\t192.0.2.99"}, ""},
		{"x.wild.example.test", dns.TypeMX, dns.RcodeSuccess, nil, "example.test."},
		{"2.0.0.127.zen.dnsbl.test", dns.TypeA, dns.RcodeSuccess, []string{"2.0.0.127.zen.dnsbl.test.\t120\tIN\tA\t127.0.0.2"}, ""},
		{"elsewhere.invalid", dns.TypeA, dns.RcodeNameError, nil, "."},
	}
	for _, tt := range tests {
		for _, proto := range []string{"udp", "tcp"} {
			r := ask(t, s, proto, tt.name, tt.qtype, false)
			var got []string
			for _, rr := range r.Answer {
				got = append(got, rr.String())
			}
			soa := ""
			if len(r.Ns) == 1 {
				soa = r.Ns[0].Header().Name
			}
			if r.Rcode != tt.rcode || !r.Authoritative || !slices.Equal(got, tt.answers) || soa != tt.soa {
				t.Errorf("%s %s over %s: rcode %s AA %v answers %q authority %v; want %s %q SOA %q",
					dns.TypeToString[tt.qtype], tt.name, proto, dns.RcodeToString[r.Rcode], r.Authoritative,
					got, r.Ns, dns.RcodeToString[tt.rcode], tt.answers, tt.soa)
			}
		}
	}
	if q := s.Queries(); len(q) != 2*len(tests) || q[0] != (dnstest.Query{Name: "example.test", Type: "MX", Proto: "udp"}) ||
		q[3].Name != "mx.example.test" || q[3].Proto != "tcp" {
		t.Errorf("query log %v", q)
	}
}

func TestTruncation(t *testing.T) {
	s := dnstest.New(t, zone)
	var big strings.Builder
	for i := range 20 {
		fmt.Fprintf(&big, "big.example.test. IN TXT \"%02d %s\"\n", i, strings.Repeat("y", 50))
	}
	if err := s.Add(big.String()); err != nil {
		t.Fatal(err)
	}
	// About 1,300 bytes: too big for 512 bytes without EDNS0, fine with it.
	r := ask(t, s, "udp", "big.example.test", dns.TypeTXT, false)
	r.Compress = true
	if !r.Truncated || r.Len() > dns.MinMsgSize {
		t.Errorf("without EDNS0: TC %v, %d bytes", r.Truncated, r.Len())
	}
	if r := ask(t, s, "udp", "big.example.test", dns.TypeTXT, true); r.Truncated || len(r.Answer) != 20 || r.IsEdns0() == nil {
		t.Errorf("with EDNS0: TC %v, %d answers, OPT %v", r.Truncated, len(r.Answer), r.IsEdns0())
	}
	if r := ask(t, s, "tcp", "big.example.test", dns.TypeTXT, false); r.Truncated || len(r.Answer) != 20 {
		t.Errorf("over TCP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	s.TruncateUDP("mx.example.test")
	if r := ask(t, s, "udp", "mx.example.test", dns.TypeA, true); !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("TruncateUDP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	if r := ask(t, s, "tcp", "mx.example.test", dns.TypeA, true); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("TruncateUDP over TCP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
}

func TestFaultPatterns(t *testing.T) {
	s := dnstest.New(t, zone)
	r := s.Resolver(dnstest.NoCache(), dnstest.Timeout(50*time.Millisecond))
	ctx := context.Background()
	class := func(name string) string {
		_, err := r.LookupA(ctx, name)
		switch {
		case err == nil:
			return "ok"
		case resolver.IsNotFound(err):
			return "notfound"
		case resolver.IsTemporary(err):
			return "temp"
		}
		return err.Error()
	}
	s.ServFail("*.zen.dnsbl.test")
	s.Refuse("mx.example.test")
	if got := class("2.0.0.127.zen.dnsbl.test"); got != "temp" {
		t.Errorf("below a *. pattern: %s", got)
	}
	if got := class("mx.example.test"); got != "temp" {
		t.Errorf("refused name: %s", got)
	}
	if got := class("www.example.test"); got != "ok" {
		t.Errorf("an unaffected name: %s", got)
	}
	s.Silent("*")
	if got := class("www.example.test"); got != "temp" {
		t.Errorf("with Silent(*): %s", got)
	}
	if got := class("mx.example.test"); got != "temp" {
		t.Errorf("an exact fault wins over *: %s", got)
	}
	s.Restore("*")
	if got := class("www.example.test"); got != "ok" {
		t.Errorf("after Restore(*): %s", got)
	}
	s.Restore()
	if got := class("2.0.0.127.zen.dnsbl.test"); got != "ok" {
		t.Errorf("after Restore(): %s", got)
	}
}

func TestChangingData(t *testing.T) {
	s := dnstest.New(t, zone)
	r := s.Resolver(dnstest.NoCache())
	ctx := context.Background()
	addrs := func(name string) string {
		a, err := r.LookupA(ctx, name)
		if err != nil {
			if resolver.IsNotFound(err) {
				return "not found"
			}
			return err.Error()
		}
		slices.SortFunc(a, netip.Addr.Compare)
		return fmt.Sprint(a)
	}
	if err := s.Add("mx.example.test. A 192.0.2.26\nnew.example.test. A 192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if got := addrs("mx.example.test"); got != "[192.0.2.25 192.0.2.26]" {
		t.Errorf("after Add: %s", got)
	}
	if got := addrs("new.example.test"); got != "[192.0.2.1]" {
		t.Errorf("added name: %s", got)
	}
	if err := s.Set("mx.example.test. A 192.0.2.30"); err != nil {
		t.Fatal(err)
	}
	if got := addrs("mx.example.test"); got != "[192.0.2.30]" {
		t.Errorf("after Set: %s", got)
	}
	if _, err := r.LookupMX(ctx, "example.test"); err != nil {
		t.Errorf("Set of A touched the MX: %v", err)
	}
	s.Remove("mx.example.test", "A")
	if got := addrs("mx.example.test"); got != "not found" {
		t.Errorf("after Remove: %s", got)
	}
	s.Remove("new.example.test")
	if _, err := r.LookupA(ctx, "new.example.test"); !resolver.IsNXDomain(err) {
		t.Errorf("after removing every record: %v, want NXDOMAIN", err)
	}
}

func TestDelay(t *testing.T) {
	s := dnstest.New(t, zone)
	s.DelayName(time.Hour, "mx.example.test")
	r := s.Resolver(dnstest.NoCache(), dnstest.Timeout(50*time.Millisecond), func(c *resolver.Config) { c.Attempts = 1 })
	ctx := context.Background()
	if _, err := r.LookupA(ctx, "mx.example.test"); !resolver.IsTemporary(err) {
		t.Errorf("delayed past the timeout: %v", err)
	}
	if _, err := r.LookupMX(ctx, "example.test"); err != nil {
		t.Errorf("a name without delay: %v", err)
	}
	s.Restore("mx.example.test")
	if _, err := r.LookupA(ctx, "mx.example.test"); err != nil {
		t.Errorf("after Restore: %v", err)
	}
	// Close does not wait for delayed answers.
	s.Delay(time.Hour)
	go r.LookupA(ctx, "www.example.test")
	for len(s.Queries()) < 4 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a delayed answer")
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := dnstest.Start("example.test. IN A not-an-address"); err == nil {
		t.Error("Start accepted a bad zone")
	}
	s, err := dnstest.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Add("x.test. IN MX"); err == nil {
		t.Error("Add accepted a bad record")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

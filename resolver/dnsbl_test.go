package resolver_test

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/postkit-mail/postkit/resolver"
)

// reverseOracle is miekg/dns's reverse name for addr, less the arpa zone.
func reverseOracle(t testing.TB, addr netip.Addr) string {
	arpa, err := dns.ReverseAddr(addr.WithZone("").String())
	if err != nil {
		t.Fatalf("dns.ReverseAddr(%s): %v", addr, err)
	}
	arpa = strings.TrimSuffix(arpa, ".in-addr.arpa.")
	return strings.TrimSuffix(arpa, ".ip6.arpa.")
}

func TestReverseName(t *testing.T) {
	tests := map[string]string{
		"1.2.3.4":                 "4.3.2.1",
		"127.0.0.2":               "2.0.0.127",
		"::ffff:192.0.2.7":        "7.2.0.192",
		"2001:db8::1":             "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
		"2001:DB8:1:2:3:4:5:ABCD": "d.c.b.a.5.0.0.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2",
	}
	for in, want := range tests {
		a := netip.MustParseAddr(in)
		if got := resolver.ReverseName(a); got != want {
			t.Errorf("ReverseName(%s) = %q, want %q", in, got, want)
		}
		if o := reverseOracle(t, a); o != want {
			t.Errorf("miekg/dns reverses %s to %q, the table says %q", in, o, want)
		}
	}
	if got := resolver.ReverseName(netip.Addr{}); got != "" {
		t.Errorf("ReverseName(zero) = %q", got)
	}
	// Random addresses against the oracle.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		for _, a := range []netip.Addr{netip.AddrFrom16(b), netip.AddrFrom4([4]byte(b[:4]))} {
			if got, want := resolver.ReverseName(a), reverseOracle(t, a); got != want {
				t.Fatalf("ReverseName(%s) = %q, miekg/dns says %q", a, got, want)
			}
		}
	}
}

func TestDNSBLQuery(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.99")
	for zone, want := range map[string]string{
		"zen.example":  "99.2.0.192.zen.example",
		"zen.example.": "99.2.0.192.zen.example",
		"":             "99.2.0.192",
	} {
		if got := resolver.DNSBLQuery(a, zone); got != want {
			t.Errorf("DNSBLQuery(%s, %q) = %q, want %q", a, zone, got, want)
		}
	}
	if got := resolver.DNSBLQuery(netip.Addr{}, "zen.example"); got != "" {
		t.Errorf("DNSBLQuery(zero) = %q", got)
	}
}

// Any 4 or 16 bytes: ReverseName agrees with miekg/dns, and the DNSBL name
// is one the Client will send.
func FuzzReverseName(f *testing.F) {
	f.Add([]byte{127, 0, 0, 2}, "zen.example")
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "dnsbl.example.")
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}, "")
	f.Fuzz(func(t *testing.T, b []byte, zone string) {
		a, ok := netip.AddrFromSlice(b)
		got := resolver.ReverseName(a)
		q := resolver.DNSBLQuery(a, zone)
		if !ok {
			if got != "" || q != "" {
				t.Fatalf("zero Addr: %q, %q", got, q)
			}
			return
		}
		if want := reverseOracle(t, a); got != want {
			t.Fatalf("ReverseName(%s) = %q, miekg/dns says %q", a, got, want)
		}
		if !strings.HasPrefix(q, got) {
			t.Fatalf("DNSBLQuery(%s, %q) = %q does not start with %q", a, zone, q, got)
		}
		if _, ok := dns.IsDomainName(q); !ok && zone == "zen.example" {
			t.Fatalf("DNSBLQuery(%s, %q) = %q is not a domain name", a, zone, q)
		}
	})
}

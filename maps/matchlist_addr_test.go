package maps

import (
	"context"
	"net/netip"
	"testing"
)

// MatchHostAddr must answer exactly as MatchHost given the text form that
// smtpd uses for a client (IPv4-mapped addresses unmapped).
func TestMatchHostAddrAgreesWithMatchHost(t *testing.T) {
	ctx := context.Background()
	lists := [][]string{
		{"127.0.0.0/8", "[::1]/128"},
		{"!192.0.2.7", "192.0.2.0/24"},
		{"[2001:db8::1]", "host.example"},
		{"inline:{192.0.2.9=x}", "10.0.0.0/8"},
		{".example.com", "!10.1.0.0/16", "10.0.0.0/8"},
	}
	clients := []struct{ name, addr string }{
		{"unknown", "127.0.0.1"}, {"mail.example.com", "192.0.2.7"}, {"x", "192.0.2.8"},
		{"host.example", "198.51.100.1"}, {"unknown", "2001:db8::1"}, {"unknown", "::ffff:192.0.2.9"},
		{"a.example.com", "10.1.2.3"}, {"unknown", "10.2.0.1"},
	}
	for _, items := range lists {
		for _, kind := range []MatchKind{HostMatch, AddrMatch} {
			l, err := NewMatchList(ctx, MatchListConfig{Name: "test", Kind: kind, ParentStyle: true}, items)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range clients {
				want, err1 := l.MatchHost(ctx, c.name, netip.MustParseAddr(c.addr).Unmap().String())
				got, err2 := l.MatchHostAddr(ctx, c.name, netip.MustParseAddr(c.addr))
				if want != got || (err1 == nil) != (err2 == nil) {
					t.Errorf("%v kind %d %s[%s]: MatchHostAddr %v, %v; MatchHost %v, %v", items, kind, c.name, c.addr, got, err2, want, err1)
				}
			}
		}
	}
}

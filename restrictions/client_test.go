package restrictions

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/resolver/dnstest"
)

const peerZone = `
$ORIGIN 2.0.192.in-addr.arpa.
7    PTR  mail.example.
8    PTR  forged.example.
9    PTR  nofwd.example.
10   PTR  1.2.3.4.
11   PTR  -bad-.example.
11   PTR  good.example.
12   PTR  fwdfail.example.
13   PTR  slow.example.
16   PTR  mail6.example.
$ORIGIN 8.b.d.0.1.0.0.2.ip6.arpa.
7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0  PTR  mail6.example.
$ORIGIN example.
mail     A     192.0.2.7
mail     AAAA  2001:db8::99
forged   A     192.0.2.100
nofwd    TXT   "no address"
good     A     192.0.2.11
fwdfail  A     192.0.2.12
slow     A     192.0.2.13
mail6    AAAA  2001:db8::7
mail6    A     192.0.2.200
`

func TestLookupClient(t *testing.T) {
	srv := dnstest.New(t, peerZone)
	srv.ServFail("fwdfail.example", "15.2.0.192.in-addr.arpa")
	srv.Silent("slow.example", "17.2.0.192.in-addr.arpa")
	r := srv.Resolver(dnstest.Timeout(100 * time.Millisecond))
	ctx := context.Background()
	ok := func(name string) ClientNames {
		return ClientNames{Name: name, NameStatus: NameOK, ReverseName: name, ReverseNameStatus: NameOK}
	}
	cases := []struct {
		addr string
		want ClientNames
	}{
		{"192.0.2.7", ok("mail.example")},
		{"::ffff:192.0.2.7", ok("mail.example")},
		{"2001:db8::7", ok("mail6.example")},
		// An IPv4 client is checked against A records only, and an IPv6
		// one against AAAA records only.
		{"192.0.2.16", ClientNames{Name: "unknown", NameStatus: NameForged, ReverseName: "mail6.example",
			ReverseNameStatus: NameOK, Warnings: []string{"hostname mail6.example does not resolve to address 192.0.2.16"}}},
		{"192.0.2.8", ClientNames{Name: "unknown", NameStatus: NameForged, ReverseName: "forged.example",
			ReverseNameStatus: NameOK, Warnings: []string{"hostname forged.example does not resolve to address 192.0.2.8"}}},
		{"192.0.2.9", ClientNames{Name: "unknown", NameStatus: NameForged, ReverseName: "nofwd.example",
			ReverseNameStatus: NameOK, Warnings: []string{"hostname nofwd.example does not resolve to address 192.0.2.9: Name or service not known"}}},
		{"192.0.2.12", ClientNames{Name: "unknown", NameStatus: NameTempFail, ReverseName: "fwdfail.example",
			ReverseNameStatus: NameOK, Warnings: []string{"hostname fwdfail.example does not resolve to address 192.0.2.12: Temporary failure in name resolution"}}},
		{"192.0.2.13", ClientNames{Name: "unknown", NameStatus: NameTempFail, ReverseName: "slow.example",
			ReverseNameStatus: NameOK, Warnings: []string{"hostname slow.example does not resolve to address 192.0.2.13: Temporary failure in name resolution"}}},
		// A numeric name is no name.
		{"192.0.2.10", ClientNames{Name: "unknown", NameStatus: NamePermFail, ReverseName: "unknown",
			ReverseNameStatus: NamePermFail, Warnings: []string{"numeric hostname: 1.2.3.4"}}},
		// Of several PTR records the first valid name counts.
		{"192.0.2.11", ClientNames{Name: "good.example", NameStatus: NameOK, ReverseName: "good.example", ReverseNameStatus: NameOK,
			Warnings: []string{"192.0.2.11: malformed hostname in PTR record: -bad-.example"}}},
		{"192.0.2.14", ClientNames{Name: "unknown", NameStatus: NamePermFail, ReverseName: "unknown", ReverseNameStatus: NamePermFail}},
		{"192.0.2.15", ClientNames{Name: "unknown", NameStatus: NameTempFail, ReverseName: "unknown", ReverseNameStatus: NameTempFail}},
		{"192.0.2.17", ClientNames{Name: "unknown", NameStatus: NameTempFail, ReverseName: "unknown", ReverseNameStatus: NameTempFail}},
	}
	for _, tc := range cases {
		got := LookupClient(ctx, r, netip.MustParseAddr(tc.addr))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.addr, got, tc.want)
		}
	}
	unknown := ClientNames{Name: "unknown", NameStatus: NamePermFail, ReverseName: "unknown", ReverseNameStatus: NamePermFail}
	if got := LookupClient(ctx, nil, netip.MustParseAddr("192.0.2.7")); !reflect.DeepEqual(got, unknown) {
		t.Errorf("nil resolver: %+v", got)
	}
	if got := LookupClient(ctx, r, netip.Addr{}); !reflect.DeepEqual(got, unknown) {
		t.Errorf("no address: %+v", got)
	}
}

// TestLookupClientRestrictions feeds the names to the restrictions that
// read them.
func TestLookupClientRestrictions(t *testing.T) {
	srv := dnstest.New(t, peerZone)
	srv.ServFail("15.2.0.192.in-addr.arpa")
	r := srv.Resolver()
	c := coreChecker(t, func(cfg *Config) {
		cfg.ClientRestrictions = "reject_unknown_reverse_client_hostname, reject_unknown_client_hostname"
		cfg.UnknownClientRejectCode = 550
	})
	ctx := context.Background()
	cases := []struct{ addr, reply string }{
		{"192.0.2.7", ""},
		{"192.0.2.8", "550 5.7.25 Client host rejected: cannot find your hostname, [192.0.2.8]"},
		{"192.0.2.14", "550 5.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.14]"},
		{"192.0.2.15", "450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.15]"},
	}
	for _, tc := range cases {
		s := &Snapshot{ClientAddr: netip.MustParseAddr(tc.addr)}
		LookupClient(ctx, r, s.ClientAddr).Apply(s)
		if got := c.Check(ctx, StageClient, s).Reply.String(); got != tc.reply {
			t.Errorf("%s: %q, want %q", tc.addr, got, tc.reply)
		}
	}
}

func ExampleLookupClient() {
	srv, err := dnstest.Start(`
7.2.0.192.in-addr.arpa.  PTR  mail.example.
mail.example.            A    192.0.2.7
8.2.0.192.in-addr.arpa.  PTR  forged.example.
forged.example.          A    192.0.2.100
`)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()
	for _, a := range []string{"192.0.2.7", "192.0.2.8", "192.0.2.9"} {
		var s Snapshot
		s.ClientAddr = netip.MustParseAddr(a)
		LookupClient(ctx, srv.Resolver(), s.ClientAddr).Apply(&s)
		fmt.Printf("%s: %s (reverse %s)\n", a, s.ClientName, s.ReverseName)
	}
	// Output:
	// 192.0.2.7: mail.example (reverse mail.example)
	// 192.0.2.8: unknown (reverse forged.example)
	// 192.0.2.9: unknown (reverse unknown)
}

package resolver_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/postkit-mail/postkit/resolver"
	"github.com/postkit-mail/postkit/resolver/dnstest"
)

func ExampleNew() {
	// In production: resolver.NewFromResolvConf(), or servers in code.
	srv, err := dnstest.Start("example.test. 300 IN MX 10 mx.example.test.")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	r, err := resolver.New(resolver.Config{
		Servers:   []string{srv.Addr()},
		Timeout:   2 * time.Second,
		CacheSize: 1000,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mxs, err := r.LookupMX(context.Background(), "Example.TEST.")
	fmt.Println(mxs, err)
	// Output: [{mx.example.test 10}] <nil>
}

func ExampleIsNotFound() {
	srv, err := dnstest.Start(`
$ORIGIN example.test.
@     SOA  ns hostmaster 1 3600 600 86400 60
mx    A    192.0.2.25
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	srv.ServFail("down.example.test")
	r := srv.Resolver()

	ctx := context.Background()
	for _, name := range []string{"nosuch.example.test", "mx.example.test", "down.example.test"} {
		_, err := r.LookupMX(ctx, name)
		fmt.Printf("%s: not found %v (NXDOMAIN %v), temporary %v\n",
			name, resolver.IsNotFound(err), resolver.IsNXDomain(err), resolver.IsTemporary(err))
	}
	// Output:
	// nosuch.example.test: not found true (NXDOMAIN true), temporary false
	// mx.example.test: not found true (NXDOMAIN false), temporary false
	// down.example.test: not found false (NXDOMAIN false), temporary true
}

func ExampleDNSBLQuery() {
	client := netip.MustParseAddr("192.0.2.7")
	fmt.Println(resolver.DNSBLQuery(client, "zen.dnsbl.example"))
	fmt.Println(resolver.ReverseName(netip.MustParseAddr("2001:db8::7")))
	// Output:
	// 7.2.0.192.zen.dnsbl.example
	// 7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2
}

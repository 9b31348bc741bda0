package dnstest_test

import (
	"context"
	"fmt"
	"slices"

	"github.com/postkit-mail/postkit/resolver"
	"github.com/postkit-mail/postkit/resolver/dnstest"
)

// acceptsMail is the code under test: it says whether a domain accepts
// mail, as an MTA decides before it queues a message for it. It takes a
// resolver.Resolver, so a test hands it a Client pointed at dnstest.
func acceptsMail(ctx context.Context, r resolver.Resolver, domain string) string {
	mxs, err := r.LookupMX(ctx, domain)
	switch {
	case resolver.IsTemporary(err):
		return "try again later (4xx)"
	case resolver.IsNotFound(err):
		// No MX: the domain's own address is its mail host (RFC 5321 5.1).
		if _, err := r.LookupA(ctx, domain); err == nil {
			return "yes, implicit MX"
		} else if resolver.IsTemporary(err) {
			return "try again later (4xx)"
		}
		return "no such domain (5xx)"
	case err != nil:
		return err.Error()
	case len(mxs) == 1 && mxs[0].Host == "":
		return "does not accept mail: null MX (5xx)"
	}
	slices.SortFunc(mxs, func(a, b resolver.MX) int { return int(a.Pref) - int(b.Pref) })
	return "yes, via " + mxs[0].Host
}

// In a test, dnstest.New(t, zone) starts the server and closes it when the
// test ends; Start is the form for code that has no *testing.T, such as
// this example.
func Example() {
	srv, err := dnstest.Start(`
$ORIGIN example.test.
@          SOA  ns hostmaster 1 3600 600 86400 60
@          MX   20 backup
@          MX   10 mx1
mx1        A    192.0.2.25
null       MX   0 .
bare       A    192.0.2.80
broken     MX   10 mx1
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	srv.ServFail("broken.example.test")

	r := srv.Resolver()
	ctx := context.Background()
	for _, d := range []string{"example.test", "null.example.test", "bare.example.test", "nosuch.example.test", "broken.example.test"} {
		fmt.Printf("%s: %s\n", d, acceptsMail(ctx, r, d))
	}
	fmt.Println("MX questions asked:", srv.Count("example.test", "MX"))
	// Output:
	// example.test: yes, via mx1.example.test
	// null.example.test: does not accept mail: null MX (5xx)
	// bare.example.test: yes, implicit MX
	// nosuch.example.test: no such domain (5xx)
	// broken.example.test: try again later (4xx)
	// MX questions asked: 1
}

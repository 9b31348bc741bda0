package maps_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/maps"
)

// A virtual_alias_maps search with recipient_delimiter = + and the
// extension propagated to the result, as virtual(5) describes.
func ExampleList_FindAddress() {
	ctx := context.Background()
	virtual := maps.List{
		maps.StaticMap{"@example.com": "catchall@example.net"},
		maps.StaticMap{"joe@example.com": "jdoe@other.example"},
	}
	isLocal := func(_ context.Context, domain string) (bool, error) { return domain == "mail.example.com", nil }
	s := maps.MappingStrategy("+", isLocal)

	keys, _ := s.AddressKeys(ctx, "joe+lists@example.com")
	for _, k := range keys {
		fmt.Printf("key %-24s partial=%v ext=%q\n", k.Text, k.Partial, k.Ext)
	}

	r, ok, err := virtual.FindAddress(ctx, "joe+lists@example.com", s)
	if err != nil || !ok {
		fmt.Println("not found", err)
		return
	}
	fmt.Printf("matched %s in table %d (step %v)\n", r.Key.Text, r.Index, r.Key.Step)
	addrs, _ := maps.MapAddressResult(r, "joe+lists@example.com", maps.AddressResultOptions{Propagate: true})
	fmt.Println(strings.Join(addrs, ", "))
	// Output:
	// key joe+lists@example.com    partial=false ext=""
	// key joe@example.com          partial=true ext="+lists"
	// key @example.com             partial=true ext=""
	// matched joe@example.com in table 1 (step noext)
	// jdoe+lists@other.example
}

// check_client_access: the hostname and its parents first; any hostname
// match ends the search, otherwise the IP address and its prefixes.
func ExampleList_FindClient() {
	access := maps.List{maps.StaticMap{"192.0.2": "REJECT", "example.com": "OK"}}
	for _, c := range []struct{ name, ip string }{
		{"mx.example.com", "192.0.2.1"},
		{"unknown", "192.0.2.1"},
		{"unknown", "203.0.113.5"},
	} {
		r, ok, _ := access.FindClient(context.Background(), c.name, c.ip, true)
		fmt.Println(c.name, c.ip, "->", ok, r.Value, r.Key.Text, r.Key.Step)
	}
	// Output:
	// mx.example.com 192.0.2.1 -> true OK example.com host_parent
	// unknown 192.0.2.1 -> true REJECT 192.0.2 addr_prefix
	// unknown 203.0.113.5 -> false   none
}

// mydestination-style domain list with a negation.
func ExampleNewMatchList() {
	ctx := context.Background()
	l, err := maps.NewMatchList(ctx, maps.MatchListConfig{Name: "relay_domains", Kind: maps.DomainMatch, ParentStyle: true},
		[]string{"!old.example.com", "example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range []string{"example.com", "sub.example.com", "old.example.com", "example.net"} {
		ok, _ := l.Match(ctx, d)
		fmt.Println(d, ok)
	}
	// Output:
	// example.com true
	// sub.example.com true
	// old.example.com false
	// example.net false
}

package restrictions

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/maps"
)

// labConfig is the address configuration of the scratch Postfix 3.7.11
// instance whose answers the expectations in resolve_test.go and
// dest_test.go were taken from (main.cf: compatibility_level 3.6,
// myhostname mail.example.com, mydomain and myorigin example.com,
// inet_interfaces 127.0.0.1, the domain lists and inline: tables below).
// The live differential version of these tests is oracle_test.go's.
func labConfig() Config {
	cfg := DefaultConfig()
	a := &cfg.Addresses
	a.Myhostname = "mail.example.com"
	a.Mydomain = "example.com"
	a.Myorigin = "example.com"
	a.Mydestination = []string{"mail.example.com", "localhost.example.com", "localhost", "example.com", ".sub.example.com"}
	a.InetInterfaces = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	a.ProxyInterfaces = nil
	a.RelayDomains = []string{"relay.example"}
	a.RelayDomainsParentStyle = true
	a.VirtualAliasDomains = []string{"valias.example"}
	a.VirtualAliasMaps = []string{"inline:{ aliased@valias.example=joe@example.com }"}
	a.VirtualMailboxDomains = []string{"vmbox.example"}
	a.VirtualMailboxMaps = []string{"inline:{ box@vmbox.example=x }"}
	a.RelayRecipientMaps = []string{"inline:{ known@relay.example=x }"}
	a.LocalRecipientMaps = []string{"inline:{ realuser=x }"}
	a.RecipientDelimiter = ""
	a.LocalTransport = "local:mail.example.com"
	cfg.Mynetworks = []string{"10.255.255.0/24"}
	cfg.RelayRestrictions = ""
	cfg.RecipientRestrictions = "reject_unauth_destination"
	return cfg
}

func labChecker(t testing.TB, edit func(*Config)) *Checker {
	t.Helper()
	cfg := labConfig()
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestResolve compares the built-in resolver with what Postfix 3.7.11's
// trivial-rewrite answered for the same addresses (the resolved address
// seen through a pcre check_recipient_access table that echoes its key,
// the class through reject_unlisted_recipient, routing through an OK that
// smtpd downgrades, validity through "501 5.1.3 Bad recipient address
// syntax"). Inputs are in internal form, as smtpd passes them.
func TestResolve(t *testing.T) {
	c := labChecker(t, nil)
	r := c.Resolver()
	const (
		L  = ClassLocal
		D  = ClassDefault
		R  = ClassRelay
		VA = ClassVirtualAlias
		VM = ClassVirtualMailbox
	)
	cases := []struct {
		in      string
		addr    string
		class   AddressClass
		routed  bool
		invalid bool
	}{
		{"joe@example.com", "joe@example.com", L, false, false},
		{"Joe@Example.COM.", "joe@example.com", L, false, false},
		{"joe", "joe@example.com", L, false, false},
		{"joe@remote.example", "joe@remote.example", D, false, false},
		{"joe%remote.example@example.com", "joe@remote.example", D, false, false},
		{"joe%remote.example@relay.example", "joe%remote.example@relay.example", R, true, false},
		{"joe@remote.example@example.com", "joe@remote.example", D, false, false},
		{"joe@remote.example@relay.example", "joe@remote.example@relay.example", R, true, false},
		{"remote.example!joe@example.com", "joe@remote.example", D, false, false},
		{"remote.example!joe@relay.example", "remote.example!joe@relay.example", R, true, false},
		{"joe@[127.0.0.1]", "joe@[127.0.0.1]", L, false, false},
		{"joe@[192.0.2.99]", "joe@[192.0.2.99]", D, false, false},
		{"@a.example,@b.example:joe@example.com", "joe@example.com", L, false, false},
		{"@example.com", "mailer-daemon@example.com", L, false, false},
		{"", "mailer-daemon@mail.example.com", L, false, false},
		{"joe@valias.example", "joe@valias.example", VA, false, false},
		{"aliased@valias.example", "aliased@valias.example", VA, false, false},
		// Virtual domain lists and mydestination match whole names only.
		{"joe@sub.valias.example", "joe@sub.valias.example", D, false, false},
		{"joe@a.sub.example.com", "joe@a.sub.example.com", D, false, false},
		{"joe@vmbox.example", "joe@vmbox.example", VM, false, false},
		{"joe@relay.example", "joe@relay.example", R, false, false},
		// relay_domains is parent style.
		{"joe@sub.relay.example", "joe@sub.relay.example", R, false, false},
		{"-joe@example.com", "-joe@example.com", L, false, true},
		{"joe@127.0.0.1", "joe@127.0.0.1", D, false, true},
		{"joe@-bad.example", "joe@-bad.example", D, false, true},
		{"joe@example.com..", "joe@example.com..", D, false, true},
		{"joe@localhost", "joe@localhost", L, false, false},
		{"joe@mail.example.com", "joe@mail.example.com", L, false, false},
		{"joe@localhost.example.com", "joe@localhost.example.com", L, false, false},
		{"double-bounce", "double-bounce@example.com", L, false, false},
		{"Double-Bounce@mail.example.com", "double-bounce@mail.example.com", L, false, false},
		{"joe smith@example.com", "joe smith@example.com", L, false, false},
		{"joe%x%y@example.com", "joe%x@y", D, true, false},
		{"joe@example.com@example.com", "joe@example.com", L, false, false},
		{"a!b!c", "b!c@a", D, true, false},
		{"user%host", "user@host", D, false, false},
		{"joe..x@example.com", "joe..x@example.com", L, false, false},
		{"joe@under_score.example", "joe@under_score.example", D, false, false},
		{"joe@x@remote.example", "joe@x@remote.example", D, true, false},
		{"joe@example", "joe@example", D, false, false},
		{"joe@[IPv6:::1]", "joe@[ipv6:::1]", D, false, false},
		{"joe@[127.0.0.2]", "joe@[127.0.0.2]", D, false, false},
		// Quoted local parts that trivial-rewrite cracks open.
		{`a\@b@example.com`, `a\@b`, D, false, false},
		{"joe@[1.2.3.4@example.com", "joe@[1.2.3.4]", D, false, false},
		{"x!y!z@example.com", "y!z@x", D, true, false},
		{"%a@example.com", "@a", D, false, false},
		{"a!@example.com", "@a", D, false, false},
		{"joe.@x@example.com", "joe.@x", D, false, false},
		{"u@[127.0.0.1]@example.com", "u@[127.0.0.1]", L, false, false},
		{"Joe Smith%Remote.Example@Example.Com", "joe smith@remote.example", D, false, false},
		{".@example.com", ".@example.com", L, false, false},
		// smtpd answers these "501 5.1.3 Bad recipient address syntax".
		{"joe(x@y)@example.com", "joe(x@y)", D, false, true},
		// A bang path with an empty site: Postfix writes the user part
		// without its spaces (trivial-rewrite's resolve answers "00@";
		// testdata/resolve/10-classes.txt compares it live).
		{"!0 0@example.com", "00@", D, false, true},
		{"a b%c d@example.com", "a b@c d", D, false, true},
		{"@@example.com", "mailer-daemon@", D, false, true},
		{"a%@example.com", "a@", D, false, true},
		{"!a@example.com", "a@", D, false, true},
		{"a@@example.com", "a@", D, false, true},
	}
	ctx := context.Background()
	for _, tc := range cases {
		got, err := r.Resolve(ctx, "s@example.com", tc.in)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.in, err)
			continue
		}
		if got.Address != tc.addr || got.Routed != tc.routed || got.Invalid != tc.invalid ||
			(!tc.invalid && got.Class != tc.class) {
			t.Errorf("Resolve(%q) = %q class %v routed %v invalid %v; want %q %v routed %v invalid %v",
				tc.in, got.Address, got.Class, got.Routed, got.Invalid, tc.addr, tc.class, tc.routed, tc.invalid)
		}
		if got.Final != got.Class.Final() && !got.Invalid {
			t.Errorf("Resolve(%q): Final %v for class %v", tc.in, got.Final, got.Class)
		}
	}
}

func TestResolveTransports(t *testing.T) {
	c := labChecker(t, func(cfg *Config) {
		cfg.Addresses.Relayhost = "[smarthost.example]:587"
	})
	ctx := context.Background()
	cases := []struct{ in, transport, nexthop string }{
		{"joe@example.com", "local", "mail.example.com"},
		{"joe@valias.example", "error", "5.1.1 User unknown in virtual alias table"},
		{"joe@vmbox.example", "virtual", "vmbox.example"},
		{"joe@relay.example", "relay", "[smarthost.example]:587"},
		{"joe@remote.example", "smtp", "[smarthost.example]:587"},
	}
	for _, tc := range cases {
		got, err := c.Resolver().Resolve(ctx, "", tc.in)
		if err != nil || got.Transport != tc.transport || got.Nexthop != tc.nexthop {
			t.Errorf("Resolve(%q) = %q:%q, %v; want %q:%q", tc.in, got.Transport, got.Nexthop, err, tc.transport, tc.nexthop)
		}
	}
	c = labChecker(t, func(cfg *Config) {
		cfg.Addresses.ShowUserUnknownTableName = false
		cfg.Addresses.LocalTransport = "lmtp:unix:private/dovecot-lmtp"
		cfg.Addresses.DefaultTransport = ""
	})
	got, _ := c.Resolver().Resolve(ctx, "", "joe@valias.example")
	if got.Nexthop != "5.1.1 User unknown" {
		t.Errorf("nexthop %q without table name", got.Nexthop)
	}
	got, _ = c.Resolver().Resolve(ctx, "", "joe@example.com")
	if got.Transport != "lmtp" || got.Nexthop != "unix:private/dovecot-lmtp" {
		t.Errorf("local transport:nexthop = %q:%q", got.Transport, got.Nexthop)
	}
	if _, err := c.Resolver().Resolve(ctx, "", "joe@remote.example"); err == nil {
		t.Error("an empty default_transport resolved without error")
	}
}

// TestResolveOptions covers the main.cf switches of trivial-rewrite.
func TestResolveOptions(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		edit   func(*AddressConfig)
		in     string
		want   string
		class  AddressClass
		routed bool
	}{
		{"append_dot_mydomain", func(a *AddressConfig) { a.AppendDotMydomain = true }, "joe@mail", "joe@mail.example.com", ClassLocal, false},
		{"append_dot_mydomain literal", func(a *AddressConfig) { a.AppendDotMydomain = true }, "joe@[127.0.0.1]", "joe@[127.0.0.1]", ClassLocal, false},
		{"append_dot_mydomain routed", func(a *AddressConfig) { a.AppendDotMydomain = true }, "joe%mail@localhost", "joe@mail.example.com", ClassLocal, false},
		{"swap_bangpath off", func(a *AddressConfig) { a.SwapBangpath = false }, "remote.example!joe@example.com", "remote.example!joe@example.com", ClassLocal, true},
		{"allow_percent_hack off", func(a *AddressConfig) { a.AllowPercentHack = false }, "joe%remote.example@example.com", "joe%remote.example@example.com", ClassLocal, true},
		{"resolve_dequoted_address off", func(a *AddressConfig) { a.ResolveDequoted = false }, "joe@remote.example@example.com", "joe@remote.example@example.com", ClassLocal, true},
		{"append_at_myorigin off", func(a *AddressConfig) { a.AppendAtMyorigin = false }, "joe", "joe@mail.example.com", ClassLocal, false},
		{"resolve_numeric_domain", func(a *AddressConfig) { a.ResolveNumericDomain = true }, "joe@127.0.0.1", "joe@[127.0.0.1]", ClassLocal, false},
		{"resolve_numeric_domain remote", func(a *AddressConfig) { a.ResolveNumericDomain = true }, "joe@192.0.2.1", "joe@[192.0.2.1]", ClassDefault, false},
		{"empty_address_recipient", func(a *AddressConfig) { a.EmptyAddressRecipient = "Bounces" }, "@example.com", "bounces@example.com", ClassLocal, false},
		{"proxy_interfaces", func(a *AddressConfig) { a.ProxyInterfaces = []netip.Addr{netip.MustParseAddr("2001:db8::1")} }, "joe@[IPv6:2001:DB8::1]", "joe@[ipv6:2001:db8::1]", ClassLocal, false},
		{"mydestination table", func(a *AddressConfig) { a.Mydestination = []string{"inline:{tbl.example=1}"} }, "joe@TBL.example", "joe@tbl.example", ClassLocal, false},
		// An address completed with @$myhostname is local only when
		// mydestination lists $myhostname (Postfix 3.7: default class).
		{"resolve_null_domain, myhostname not local", func(a *AddressConfig) {
			a.ResolveNullDomain = true
			a.Mydestination = []string{"example.com"}
		}, "joe@", "joe@mail.example.com", ClassDefault, false},
		{"null address, myhostname not local", func(a *AddressConfig) { a.Mydestination = []string{"example.com"} },
			"", "mailer-daemon@mail.example.com", ClassDefault, false},
		{"local routing to a bare local part, myhostname not local", func(a *AddressConfig) {
			a.ResolveNullDomain = true
			a.Mydestination = []string{"example.com"}
		}, "x@example.com@", "x@example.com", ClassLocal, false},
		{"resolve_null_domain, myhostname local", func(a *AddressConfig) { a.ResolveNullDomain = true },
			"joe@", "joe@mail.example.com", ClassLocal, false},
		{"relay_domains dot style", func(a *AddressConfig) {
			a.RelayDomainsParentStyle = false
			a.RelayDomains = []string{".relay.example"}
		}, "joe@sub.relay.example", "joe@sub.relay.example", ClassRelay, false},
	}
	for _, tc := range cases {
		c := labChecker(t, func(cfg *Config) { tc.edit(&cfg.Addresses) })
		got, err := c.Resolver().Resolve(ctx, "", tc.in)
		if err != nil || got.Address != tc.want || got.Class != tc.class || got.Routed != tc.routed || got.Invalid {
			t.Errorf("%s: Resolve(%q) = %+v, %v; want %q %v routed %v", tc.name, tc.in, got, err, tc.want, tc.class, tc.routed)
		}
	}
	c := labChecker(t, func(cfg *Config) { cfg.Addresses.AllowMinUser = true })
	if got, _ := c.Resolver().Resolve(ctx, "", "-joe@example.com"); got.Invalid || got.Class != ClassLocal {
		t.Errorf("allow_min_user: %+v", got)
	}
}

// TestResolveLookupFailure: a domain list whose table fails makes the
// resolution fail, as trivial-rewrite's RESOLVE_FLAG_FAIL; which list is
// asked depends on the domain (local domains are decided first).
func TestResolveLookupFailure(t *testing.T) {
	ctx := context.Background()
	broken := maps.FuncMap(func(context.Context, string) (string, bool, error) {
		return "", false, &maps.Error{Map: "mem:broken", Temporary: true, Err: context.DeadlineExceeded}
	})
	c := labChecker(t, func(cfg *Config) {
		cfg.Tables = map[string]maps.Map{"mem:broken": broken}
		cfg.Addresses.RelayDomains = []string{"mem:broken"}
	})
	if _, err := c.Resolver().Resolve(ctx, "", "joe@example.com"); err != nil {
		t.Errorf("local address: %v", err)
	}
	if _, err := c.Resolver().Resolve(ctx, "", "joe@remote.example"); err == nil || !strings.Contains(err.Error(), "relay_domains") {
		t.Errorf("remote address: %v", err)
	}
}

// TestResolveFastPath checks that the shortcut for plain addresses gives
// what the tokenizing path gives.
func TestResolveFastPath(t *testing.T) {
	ctx := context.Background()
	for _, dot := range []bool{false, true} {
		c := labChecker(t, func(cfg *Config) { cfg.Addresses.AppendDotMydomain = dot })
		r := c.dest.builtin
		for _, in := range []string{"joe@example.com", "Joe.X@Example.Com.", "a@b", "a@b.", "a@b..", "joe@mail",
			"joe@relay.example", "j_o-e@sub.relay.example.", "joe@127.0.0.1", "joe@-x", "joe@x-", "r@valias.example"} {
			local, domain, ok := simpleAddr(in)
			if !ok {
				t.Fatalf("simpleAddr(%q) is not simple", in)
			}
			fast, ferr := r.resolveSimple(ctx, local, domain)
			next, remote, serr := r.strip.Strip(ctx, r.rewriteInternal(in))
			slow, cerr := r.classify(ctx, next, remote)
			if ferr != nil || serr != nil || cerr != nil || fast != slow {
				t.Errorf("append_dot_mydomain=%v %q: fast %+v, slow %+v (%v %v %v)", dot, in, fast, slow, ferr, serr, cerr)
			}
		}
	}
}

// FuzzResolve feeds arbitrary addresses to the built-in resolver: it must
// not panic or fail without a table error, must answer in lower case
// for valid UTF-8 input, and resolving a plain answer again must give the
// same address and class.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"joe@example.com", "Joe@Example.COM.", "joe", "joe%remote@example.com",
		"remote!joe@relay.example", "joe@remote@example.com", "@a,@b:joe@example.com", "@example.com", "",
		"joe@[127.0.0.1]", "joe@[IPv6:::1]", "a!b!c", "\"q\"@x", "joe smith@example.com", "x(c)@y", "@", "@:",
		"a%b%c", "joe@ex\\ample.com", "joe@127.0.0.1", "-x@example.com", "joe@[1.2.3.4", "((a@b", "héllo@bücher.example"} {
		f.Add(s)
	}
	cfg := labConfig()
	cfg.Addresses.ResolveNumericDomain = true
	c, err := New(context.Background(), cfg)
	if err != nil {
		f.Fatal(err)
	}
	r := c.Resolver()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1000 {
			return
		}
		got, err := r.Resolve(ctx, "", in)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", in, err)
		}
		if !strings.Contains(got.Address, "@") {
			t.Fatalf("Resolve(%q) = %q: no @domain", in, got.Address)
		}
		if utf8.ValidString(in) && maps.FoldKey(got.Address) != got.Address {
			t.Fatalf("Resolve(%q) = %q: not case-folded", in, got.Address)
		}
		// Postfix's resolver is not idempotent on garbage ("!0 0" after a
		// quoted "!0"0 was cracked open): require it for results whose local
		// part needs no quotes and holds no routing.
		at := strings.LastIndexByte(got.Address, '@')
		if got.Invalid || got.Routed || address.NeedsQuoting(got.Address[:at]) {
			return
		}
		again, err := r.Resolve(ctx, "", got.Address)
		if err != nil || again.Address != got.Address || again.Class != got.Class || again.Routed != got.Routed {
			t.Fatalf("Resolve(%q) = %+v; resolving %q again gives %+v, %v", in, got, got.Address, again, err)
		}
	})
}

// The built-in resolver puts an address in canonical form and finds its
// address class, as trivial-rewrite does for smtpd.
func ExampleChecker_Resolver() {
	cfg := DefaultConfig()
	a := &cfg.Addresses
	a.Myhostname, a.Mydomain, a.Myorigin = "mx.example.com", "example.com", "example.com"
	a.Mydestination = []string{"example.com", "mx.example.com"}
	a.RelayDomains = []string{"partner.example"}
	c, err := New(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, addr := range []string{"Joe", "joe%partner.example@example.com", "bob@Sub.Partner.Example.",
		"eve%elsewhere.example@partner.example"} {
		r, err := c.Resolver().Resolve(context.Background(), "", addr)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s -> %s, %v, routed %v\n", addr, r.Address, r.Class, r.Routed)
	}
	// Output:
	// Joe -> joe@example.com, local, routed false
	// joe%partner.example@example.com -> joe@partner.example, relay, routed false
	// bob@Sub.Partner.Example. -> bob@sub.partner.example, relay, routed false
	// eve%elsewhere.example@partner.example -> eve%elsewhere.example@partner.example, relay, routed true
}

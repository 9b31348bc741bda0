package route

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postkit-mail/postkit/maps"
)

// Seeds are in testdata/fuzz/<name> as well as below.

func FuzzParseTransport(f *testing.F) {
	for _, s := range []string{"smtp:[mx.example.com]:25", "lmtp:unix:/run/lmtp", "lmtp:inet:h:24", "error:5.1.1 text", ":", "discard:", "x", ":nh", "smtp::", "sm tp:x", "a:b\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tr, nh, err := ParseTransport(v)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "route: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if strings.Contains(tr, ":") {
			t.Fatalf("transport %q holds ':'", tr)
		}
		joined := tr
		if strings.Contains(v, ":") {
			joined += ":" + nh
		}
		if joined != v {
			t.Fatalf("ParseTransport(%q) = %q, %q: does not rebuild the value", v, tr, nh)
		}
	})
}

func FuzzParseNexthop(f *testing.F) {
	for _, s := range []string{"example.com", "example.com:2525", "[mx.example.com]", "[ipv6:2001:db8::1]:25", "inet:h:24", "inet:[1.2.3.4]:24", "unix:/run/lmtp", "[a", "[]", "a:", "[ipv6:]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNexthop(s)
		if err != nil {
			return
		}
		// What String writes parses back to the same destination.
		again, err := ParseNexthop(n.String())
		if err != nil || again != n {
			t.Fatalf("ParseNexthop(%q) = %+v; String %q parses to %+v, %v", s, n, n.String(), again, err)
		}
	})
}

// FuzzResolve gives the resolver arbitrary recipients: it must answer
// (never panic or loop), and every answer is user@domain.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"joe@example.com", "joe%remote@example.com", "a!b!c", "@a,@b:joe@example.com", `"a@b"@example.com`, "joe@[127.0.0.1]", "", "@", "joe@", "x@a..b", "(c)joe@example.com", "[", "\"", "\\", "joe@example.com@example.com@"} {
		f.Add("s@sender.example", s)
	}
	c := Defaults("mx.example.com", "example.com")
	c.Logger = discardLogger()
	c.ResolveNumericDomain = true
	ctx := context.Background()
	mydest, err := maps.NewMatchList(ctx, maps.MatchListConfig{Name: "mydestination", Kind: maps.StringMatch}, []string{"example.com", "localhost"})
	if err != nil {
		f.Fatal(err)
	}
	c.MyDestination = mydest
	c.RecipientDelimiter = "+"
	c.TransportMaps = maps.List{maps.StaticMap{"*": "smtp:[wild.example]"}}
	c.SenderDependentRelayhostMaps = maps.List{maps.StaticMap{"@corp.example": "[corp]"}}
	r, err := New(c)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sender, rcpt string) {
		if !utf8.ValidString(rcpt) || len(rcpt) > 2000 {
			return
		}
		res, err := r.Resolve(ctx, sender, rcpt)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", rcpt, err)
		}
		if !strings.Contains(res.Recipient, "@") {
			t.Fatalf("Resolve(%q) recipient %q has no '@'", rcpt, res.Recipient)
		}
		if !res.Invalid && (res.Transport == "" || res.Nexthop == "" || res.Class == 0) {
			t.Fatalf("Resolve(%q) = %+v: incomplete", rcpt, res)
		}
	})
}

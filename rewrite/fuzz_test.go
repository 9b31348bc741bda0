package rewrite

import (
	"context"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/maps"
)

// FuzzHeader feeds arbitrary header values through the tok822 parser and
// the header rewriter. Whatever the input, it must not panic, an
// unchanged header must come back byte for byte, and a regenerated one
// must still be a well-formed header value: CRLF line ends only, and
// every continuation line starting with white space.
func FuzzHeader(f *testing.F) {
	for _, h := range append(append([]string{}, headerSet...), mappedHeaders...) {
		_, v, _ := strings.Cut(h, ":")
		f.Add(strings.ReplaceAll(v, "\n", "\r\n"), uint8(0))
	}
	c := Defaults("origin.test", "example.test")
	c.Logger = quiet()
	c.AppendDotMyDomain = true
	c.RecipientDelimiter = "+"
	c.CanonicalMaps = maps.List{maps.StaticMap{
		"old@origin.test": "new@origin.test",
		"@dom.test":       "@other.test, second@x",
		"loop@x.test":     "loop2@x.test",
		"loop2@x.test":    "loop@x.test",
	}}
	c.MasqueradeDomains = []string{"!keep.masq.test", "masq.test"}
	c.HeaderAddressTokenLimit = 64
	r, err := New(c)
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, value string, mode uint8) {
		name := "To"
		if mode&1 != 0 {
			name = "From"
		}
		domain := ""
		if mode&2 != 0 {
			domain = "remote.test"
		}
		// A received header has CRLF line ends and continuation lines
		// that start with white space; make the input one.
		value = strings.ReplaceAll(value, "\r", "")
		value = strings.ReplaceAll(value, "\n", "\r\n ")
		out, changed, err := r.HeaderLine(ctx, name, value, domain, mode&4 != 0)
		if err != nil {
			t.Fatalf("HeaderLine(%q): %v", value, err)
		}
		if !changed {
			if out != value {
				t.Fatalf("unchanged header came back different: %q -> %q", value, out)
			}
			return
		}
		lines := strings.Split(out, "\r\n")
		for i, l := range lines {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("bare CR or LF in %q", out)
			}
			if i > 0 && l != "" && l[0] != ' ' && l[0] != '\t' {
				t.Fatalf("continuation line %d does not start with white space: %q", i, out)
			}
			if i > 0 && i < len(lines)-1 && l == "" {
				t.Fatalf("empty line inside the header: %q", out)
			}
		}
	})
}

// FuzzCanonicalForm: any address goes through the canonical form and the
// mappings without panicking, and the shortcut for plain addresses agrees
// with the full token rewrite.
func FuzzCanonicalForm(f *testing.F) {
	for _, a := range envelopeAddrs {
		f.Add(a)
	}
	c := Defaults("origin.test", "example.test")
	c.Logger = quiet()
	c.AppendDotMyDomain = true
	r, err := New(c)
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, addr string) {
		// The shortcut for plain addresses gives what the full rewrite
		// gives.
		ext := address.Quote(addr)
		if fast, slow := r.canonExternal(ext, "origin.test", "example.test"), r.canonSlow(ext, "origin.test", "example.test"); fast != slow {
			t.Fatalf("canonical form of %q: shortcut %q, rewrite %q", ext, fast, slow)
		}
		if fast, slow := r.canonExternal(addr, "o.test", "d.test"), r.canonSlow(addr, "o.test", "d.test"); fast != slow {
			t.Fatalf("canonical form of %q: shortcut %q, rewrite %q", addr, fast, slow)
		}
		if _, err := r.Sender(ctx, addr, false); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Recipient(ctx, addr, false); err != nil {
			t.Fatal(err)
		}
	})
}

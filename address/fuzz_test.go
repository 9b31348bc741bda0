package address

import (
	"strings"
	"testing"
)

func FuzzAddressParsePath(f *testing.F) {
	for _, s := range []string{"<user@example.com>", "<>", "<@a,@b:u@c>", `<"a b"@x>`, "Joe <a@b>", "a@b (c)", "<u@[IPv6:::1]>", "<u@[1.2.3.4]>", `<"\\"@x>`} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, strict bool) {
		p, err := ParsePath(s, PathOptions{Strict: strict, AllowNull: true})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if p.Address.Domain != "" {
			if err := ValidDomain(p.Address.Domain); err != nil {
				t.Fatalf("ParsePath(%q) accepted bad domain: %v", s, err)
			}
		}
		// The external form of an accepted path parses back to the same
		// address in strict mode.
		if !p.Address.IsNull() && p.Address.Local != "" {
			back, err := ParsePath("<"+p.Address.String()+">", PathOptions{Strict: true})
			if err != nil || back.Address != p.Address {
				t.Fatalf("round trip of %q via %q: %+v, %v", s, p.Address.String(), back, err)
			}
		}
	})
}

func FuzzAddressParseList(f *testing.F) {
	for _, s := range []string{"a@b", "Joe <j@x>, k@y", "g: a@x, b@y; c@z", `"a b"@x (c)`, "a@b c@d", "<@r:u@x>", "x\\y@z", ",,", "undisclosed-recipients:;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		list, err := ParseList(s)
		if err != nil {
			return
		}
		for _, m := range list {
			if m.Start < 0 || m.Start > m.End || m.End > len(s) {
				t.Fatalf("ParseList(%q): bad span %d..%d", s, m.Start, m.End)
			}
		}
	})
}

func FuzzAddressQuote(f *testing.F) {
	for _, s := range []string{"a b@x", "a@b@x", `a"b@x`, `a\b@x`, ".a@x", "joe", "", "@r:a b@x", "jöe@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := Quote(s)
		if strings.HasPrefix(s, "@") {
			return // a leading '@' reads as a source route
		}
		if got := Unquote(q); got != s {
			t.Fatalf("Unquote(Quote(%q)) = %q via %q", s, got, q)
		}
		u, e := SplitExtension(s, "+-", SplitOptions{})
		if u+e != s {
			t.Fatalf("SplitExtension(%q) = %q + %q", s, u, e)
		}
	})
}

package tok822

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postkit-mail/postkit/address"
)

func TestQuoteAndScan(t *testing.T) {
	for _, tc := range []struct{ in, quoted, internal string }{
		{"joe@example.com", "joe@example.com", "joe@example.com"},
		{"joe smith@example.com", `"joe smith"@example.com`, "joe smith@example.com"},
		{`a"b\c@x`, `"a\"b\\c"@x`, `a"b\c@x`},
		{"a@b@c", `"a@b"@c`, "a@b@c"},
		{"@r1,@r2:u@x", "@r1,@r2:u@x", "@r1, @r2:u@x"},
		{"", `""`, ""},
		{"x.@y", `"x."@y`, "x.@y"},
		{"joe(comment)@x", `"joe(comment)"@x`, "joe(comment)@x"},
		{"joe@x(c) y", "joe@x(c) y", "joe@x (c) y"},
	} {
		q := address.Quote(tc.in)
		if q != tc.quoted {
			t.Errorf("address.Quote(%q) = %q, want %q", tc.in, q, tc.quoted)
		}
		if got := Internalize(Scan(q)); got != tc.internal {
			t.Errorf("Internalize(Scan(%q)) = %q, want %q", q, got, tc.internal)
		}
	}
}

func TestScanTokens(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Token
	}{
		{`a.b@[1.2.3.4]`, []Token{{Type: Atom, Text: "a"}, {Type: '.'}, {Type: Atom, Text: "b"}, {Type: '@'}, {Type: DomLit, Text: "1.2.3.4"}}},
		{`"q \" x"@y`, []Token{{Type: QString, Text: `q " x`}, {Type: '@'}, {Type: Atom, Text: "y"}}},
		// A backslash-escaped special makes the atom a quoted string.
		{`a\@b`, []Token{{Type: QString, Text: "a@b"}}},
		{`a\\b`, []Token{{Type: QString, Text: `a\b`}}},
		{"x (a (b) \\) c) y", []Token{{Type: Atom, Text: "x"}, {Type: Comment, Text: "(a (b) \\) c)"}, {Type: Atom, Text: "y"}}},
		{"u%v!w|z", []Token{{Type: Atom, Text: "u"}, {Type: '%'}, {Type: Atom, Text: "v"}, {Type: '!'}, {Type: Atom, Text: "w"}, {Type: '|'}, {Type: Atom, Text: "z"}}},
		// Unterminated constructs run to the end.
		{`"abc`, []Token{{Type: QString, Text: "abc"}}},
		{`[1.2`, []Token{{Type: DomLit, Text: "1.2"}}},
		{`(a`, []Token{{Type: Comment, Text: "(a"}}},
		{"\"a\tb\"", []Token{{Type: QString, Text: "a b"}}},
		{`bücher`, []Token{{Type: Atom, Text: "bücher"}}},
	} {
		got := Scan(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("Scan(%q) = %+v, want %+v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Scan(%q)[%d] = %+v, want %+v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
	if got := ScanLimit("a, b, c, d", 3); len(got) != 3 || Internalize(got) != "a, b" {
		t.Errorf("ScanLimit 3: %+v", got)
	}
}

// TestRewrite checks rewrite_tree in the local context; the expectations
// are what Postfix 3.7's trivial-rewrite answers to a "rewrite local"
// request under the same settings (route and restrictions compare the
// whole resolver with it live).
func TestRewrite(t *testing.T) {
	all := Context{Origin: "origin.example", Domain: "dom.example", AppendAtOrigin: true, AppendDotDomain: true, SwapBangPath: true, AllowPercentHack: true}
	for _, tc := range []struct {
		ctx      Context
		in, want string
	}{
		{all, "joe", "joe@origin.example"},
		{all, "joe@host", "joe@host.dom.example"},
		{all, "joe@host.", "joe@host"},
		{all, "joe@[1.2.3.4]", "joe@[1.2.3.4]"},
		{all, "site!joe", "joe@site.dom.example"},
		{all, "a!b!joe", "b!joe@a.dom.example"},
		{all, "!a b", "ab@"},
		{all, "joe%site", "joe@site.dom.example"},
		{all, "joe%a%b", "joe%a@b.dom.example"},
		{all, "@r1,@r2:joe@x.y", "joe@x.y"},
		{all, "@", ""},
		{all, "", ""},
		{all, "joe@x..", "joe@x.."},
		{all, "joe@.", "joe@."},
		{Context{SwapBangPath: false, AllowPercentHack: true}, "site!joe%h", "site!joe@h"},
		{Context{}, "joe", "joe"},
	} {
		got := Internalize(tc.ctx.Rewrite(Scan(tc.in)))
		if got != tc.want {
			t.Errorf("%+v: Rewrite(%q) = %q, want %q", tc.ctx, tc.in, got, tc.want)
		}
	}
}

func TestStrip(t *testing.T) {
	local := map[string]bool{"example.com": true, "localhost": true, "[127.0.0.1]": true}
	errTable := errors.New("table down")
	r := Resolver{
		Context:               Context{Origin: "example.com", AppendAtOrigin: true, SwapBangPath: true, AllowPercentHack: true},
		MyHostname:            "mx.example.com",
		ResolveDequoted:       true,
		EmptyAddressRecipient: "MAILER-DAEMON",
		IsLocal: func(_ context.Context, d string) (bool, error) {
			if d == "fail.example" {
				return false, errTable
			}
			return local[strings.ToLower(d)], nil
		},
	}
	for _, tc := range []struct {
		in, want string
		remote   bool
	}{
		{"joe@example.com", "joe@example.com", false},
		{"joe@remote.example", "joe@remote.example", true},
		{"joe%remote.example@example.com", "joe@remote.example", true},
		{"remote.example!joe@localhost", "joe@remote.example", true},
		{"joe@remote.example@example.com", "joe@remote.example", true},
		{"joe%localhost@example.com", "joe@localhost", false},
		{"@example.com", "MAILER-DAEMON@example.com", false},
		{"joe@[127.0.0.1]", "joe@[127.0.0.1]", false},
		{"joe@example.com.", "joe@example.com", false},
		{"joe@", "joe@", false}, // an empty domain: the caller finds it invalid
		// mx.example.com is not in the local list: an address completed
		// with @$myhostname is remote then (Postfix's default class).
		{"", "MAILER-DAEMON@mx.example.com", true},
	} {
		got, remote, err := r.Strip(context.Background(), tc.in)
		if err != nil || got != tc.want || remote != tc.remote {
			t.Errorf("Strip(%q) = %q, remote %v, %v; want %q, remote %v", tc.in, got, remote, err, tc.want, tc.remote)
		}
	}
	if _, _, err := r.Strip(context.Background(), "joe@fail.example"); !errors.Is(err, errTable) {
		t.Errorf("failing table: %v", err)
	}
	r.ResolveNullDomain = true
	if got, remote, _ := r.Strip(context.Background(), "joe@"); got != "joe@mx.example.com" || !remote {
		t.Errorf("resolve_null_domain joe@: %q %v", got, remote)
	}
	local["mx.example.com"] = true
	if got, remote, _ := r.Strip(context.Background(), "joe@"); got != "joe@mx.example.com" || remote {
		t.Errorf("local myhostname joe@: %q %v", got, remote)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := r.Strip(ctx, "joe@example.com"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// FuzzScan: scanning never panics, loses no non-space text outside
// quotes and comments, and internalizing then scanning again is stable
// for what it produced.
func FuzzScan(f *testing.F) {
	for _, s := range []string{"joe@example.com", `"a b"@c`, "(x (y)) z", "[1.2", `a\@b`, "@a,@b:c@d", "!a b", "a%b!c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		toks := Scan(s)
		for _, tk := range toks {
			if tk.Type < 256 && !IsOperator(byte(tk.Type)) {
				t.Fatalf("Scan(%q): token type %d is no operator", s, tk.Type)
			}
			if tk.Type == Atom && atomNeedsQuote([]byte(tk.Text)) {
				t.Fatalf("Scan(%q): atom %q needs quoting", s, tk.Text)
			}
		}
		if len(s) > 0 && !strings.ContainsAny(s, " \t\r\n\\\"([") && len(toks) == 0 {
			t.Fatalf("Scan(%q): no tokens", s)
		}
		if lim := ScanLimit(s, 3); len(lim) > 3 || len(lim) > len(toks) || len(lim) < min(3, len(toks)) {
			t.Fatalf("ScanLimit(%q, 3) = %d tokens of %d", s, len(lim), len(toks))
		} else {
			for i := range lim {
				if lim[i] != toks[i] {
					t.Fatalf("ScanLimit(%q, 3)[%d] = %+v, Scan gives %+v", s, i, lim[i], toks[i])
				}
			}
		}
		in := Internalize(toks)
		if utf8.ValidString(s) && !utf8.ValidString(in) {
			t.Fatalf("Internalize made invalid UTF-8 from %q: %q", s, in)
		}
		c := Context{Origin: "o.example", Domain: "d.example", AppendAtOrigin: true, AppendDotDomain: true, SwapBangPath: true, AllowPercentHack: true}
		c.Rewrite(toks)
	})
}

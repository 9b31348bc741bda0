package address

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestQuoteUnquote(t *testing.T) {
	tests := []struct{ internal, external string }{
		{"joe@example.com", "joe@example.com"},
		{"a b@x", `"a b"@x`},
		{"a@b@x", `"a@b"@x`},
		{`a"b@x`, `"a\"b"@x`},
		{`a\b@x`, `"a\\b"@x`},
		{".joe@x", `".joe"@x`},
		{"joe.@x", `"joe."@x`},
		{"a..b@x", `"a..b"@x`},
		{"a.b@x", "a.b@x"},
		{"@x", `""@x`},
		{"jöe@x", "jöe@x"}, // 8-bit text is not quoted
		{"a(b)@x", `"a(b)"@x`},
		{"a,b@x", `"a,b"@x`},
		{"a[b]@x", `"a[b]"@x`},
		{"a\tb@x", "\"a\tb\"@x"},
		{"joe", "joe"},
		{"a b", `"a b"`},
		{"@r1,@r2:a b@x", `@r1,@r2:"a b"@x`},
		{"user+ext@x", "user+ext@x"},
		{"a b@", `"a b"@`},
	}
	for _, tt := range tests {
		if got := Quote(tt.internal); got != tt.external {
			t.Errorf("Quote(%q) = %q, want %q", tt.internal, got, tt.external)
		}
		if got := Unquote(tt.external); got != tt.internal {
			t.Errorf("Unquote(%q) = %q, want %q", tt.external, got, tt.internal)
		}
	}
	// Unquote-only cases: quotes in the middle, escapes outside quotes, and
	// a domain that is copied as it is.
	for in, want := range map[string]string{
		`a."b c"@x`:  "a.b c@x",
		`a\ b@x`:     "a b@x",
		`"a"@"x"`:    `a@"x"`,
		`joe`:        "joe",
		`"a@b"`:      "a@b",
		`trailing\`:  "trailing",
		`"x"@y@z`:    "x@y@z",
		`"x@y"@z\q`:  `x@y@z\q`,
		`@r:"a b"@x`: "@r:a b@x",
	} {
		if got := Unquote(in); got != want {
			t.Errorf("Unquote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAddressString(t *testing.T) {
	for _, tt := range []struct {
		a    Address
		want string
	}{
		{Address{}, ""},
		{Address{"joe", "x"}, "joe@x"},
		{Address{"a b", "x"}, `"a b"@x`},
		{Address{"", "x"}, `""@x`},
		{Address{"postmaster", ""}, "postmaster"},
	} {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.a, got, tt.want)
		}
		if tt.a.Domain != "" && Split(tt.a.Internal()) != tt.a {
			t.Errorf("Split(%q) = %#v", tt.a.Internal(), Split(tt.a.Internal()))
		}
	}
}

func TestSplitExtension(t *testing.T) {
	tests := []struct {
		local, delims string
		opts          SplitOptions
		user, ext     string
	}{
		{"joe+foo", "+", SplitOptions{}, "joe", "+foo"},
		{"joe+foo+bar", "+", SplitOptions{}, "joe", "+foo+bar"},
		{"joe-foo+bar", "+-", SplitOptions{}, "joe", "-foo+bar"},
		{"joe+foo-bar", "+-", SplitOptions{}, "joe", "+foo-bar"},
		{"joe", "+", SplitOptions{}, "joe", ""},
		{"joe+foo", "", SplitOptions{}, "joe+foo", ""},
		{"+foo", "+", SplitOptions{}, "+foo", ""}, // empty user: no split
		{"joe+", "+", SplitOptions{}, "joe", "+"}, // empty extension splits (split_addr 3.7)
		{"postmaster", "t", SplitOptions{}, "postmaster", ""},
		{"PostMaster", "+t", SplitOptions{}, "PostMaster", ""},
		{"MAILER-DAEMON", "-", SplitOptions{}, "MAILER-DAEMON", ""},
		{"mailer-daemon", "-", SplitOptions{}, "mailer-daemon", ""},
		{"double-bounce", "-", SplitOptions{}, "double-bounce", ""},
		{"bounce-x", "-", SplitOptions{DoubleBounceSender: "bounce-x"}, "bounce-x", ""},
		{"double-bounce", "-", SplitOptions{DoubleBounceSender: "db", NoOwnerRequestSpecial: true}, "double", "-bounce"},
		{"owner-list", "-", SplitOptions{}, "owner-list", ""},
		{"Owner-list", "+-", SplitOptions{}, "Owner-list", ""},
		{"list-request", "-", SplitOptions{}, "list-request", ""},
		{"list-REQUEST", "-", SplitOptions{}, "list-REQUEST", ""},
		{"-request", "-", SplitOptions{}, "-request", ""}, // not exempt, but user would be empty
		{"owner-list", "-", SplitOptions{NoOwnerRequestSpecial: true}, "owner", "-list"},
		{"list-request", "-", SplitOptions{NoOwnerRequestSpecial: true}, "list", "-request"},
		{"owner+x", "+", SplitOptions{}, "owner", "+x"}, // '-' not a delimiter: owner-* rule off
		{"owner-x+y", "+", SplitOptions{}, "owner-x", "+y"},
		{"list-request+y", "+", SplitOptions{}, "list-request", "+y"},
		{"", "+", SplitOptions{}, "", ""},
	}
	for _, tt := range tests {
		u, e := SplitExtension(tt.local, tt.delims, tt.opts)
		if u != tt.user || e != tt.ext {
			t.Errorf("SplitExtension(%q, %q, %+v) = %q, %q; want %q, %q", tt.local, tt.delims, tt.opts, u, e, tt.user, tt.ext)
		}
	}
	for _, tt := range []struct{ in, stripped, ext string }{
		{"joe+x@example.com", "joe@example.com", "+x"},
		{"joe@example.com", "joe@example.com", ""},
		{"a+b@c@d", "a@d", "+b@c"},
		{"joe+x", "joe", "+x"},
	} {
		s, e, ok := StripExtension(tt.in, "+", SplitOptions{})
		if s != tt.stripped || e != tt.ext || ok != (tt.ext != "") {
			t.Errorf("StripExtension(%q) = %q, %q, %v", tt.in, s, e, ok)
		}
	}
}

func TestValidHostname(t *testing.T) {
	good := []string{"example.com", "a", "a-b.c", "x_y.example", "1a.example", "a.b.c.d.e", "123.example.com", "host.123", strings.Repeat("a", 63) + ".com"}
	for _, h := range good {
		if err := ValidHostname(h); err != nil {
			t.Errorf("ValidHostname(%q) = %v, want nil", h, err)
		}
	}
	bad := map[string]string{
		"":                              "empty",
		"-a.com":                        "misplaced hyphen",
		"a-.com":                        "misplaced hyphen",
		"a..b":                          "misplaced dot",
		".a":                            "misplaced dot",
		"a.":                            "misplaced dot",
		"a b":                           "invalid character",
		"1.2.3.4":                       "numeric",
		strings.Repeat("a", 64) + ".x":  "label longer",
		strings.Repeat("a.", 128) + "x": "longer than 255",
	}
	for h, want := range bad {
		err := ValidHostname(h)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidHostname(%q) = %v, want error containing %q", h, err, want)
		}
	}
}

func TestParseLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"[192.0.2.1]":           "192.0.2.1",
		"[IPv6:2001:db8::1]":    "2001:db8::1",
		"[ipv6:2001:DB8::1]":    "2001:db8::1",
		"[IPv6:::ffff:1.2.3.4]": "::ffff:1.2.3.4",
	} {
		a, err := ParseLiteral(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseLiteral(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
	for in, want := range map[string]string{
		"192.0.2.1":           "not enclosed",
		"[2001:db8::1]":       "needs the IPv6: tag",
		"[IPv6:192.0.2.1]":    "bad IPv6",
		"[300.1.1.1]":         "bad IPv4",
		"[IPv6:fe80::1%eth0]": "bad IPv6",
		"[example.com]":       "bad IPv4",
	} {
		_, err := ParseLiteral(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseLiteral(%q) = %v, want error containing %q", in, err, want)
		}
	}
	if got := FormatLiteral(netip.MustParseAddr("2001:db8::1")); got != "[IPv6:2001:db8::1]" {
		t.Errorf("FormatLiteral = %q", got)
	}
	if got := FormatLiteral(netip.MustParseAddr("::ffff:192.0.2.1")); got != "[192.0.2.1]" {
		t.Errorf("FormatLiteral mapped = %q", got)
	}
}

func TestIDNA(t *testing.T) {
	a, err := ToASCII("Bücher.example")
	if err != nil || a != "xn--bcher-kva.example" {
		t.Errorf("ToASCII = %q, %v", a, err)
	}
	u, err := ToUnicode("xn--bcher-kva.example")
	if err != nil || u != "bücher.example" {
		t.Errorf("ToUnicode = %q, %v", u, err)
	}
	if a, _ := ToASCII("Plain.Example"); a != "Plain.Example" {
		t.Errorf("ToASCII(ascii) changed the name: %q", a)
	}
	if err := ValidDomain("bücher.example"); err != nil {
		t.Errorf("ValidDomain(U-label) = %v", err)
	}
	if err := ValidDomain("[IPv6:::1]"); err != nil {
		t.Errorf("ValidDomain(literal) = %v", err)
	}
	if err := ValidDomain("a..b"); err == nil {
		t.Error("ValidDomain(a..b) = nil")
	}
	if _, err := ToUnicode("xn--zz-.example"); err == nil {
		t.Error("ToUnicode(bad punycode) = nil error")
	}
}

func TestNeedsSMTPUTF8(t *testing.T) {
	for _, tt := range []struct {
		a          Address
		need, non8 bool
	}{
		{Address{"joe", "example.com"}, false, false},
		{Address{"jöe", "example.com"}, true, true},
		{Address{"joe", "bücher.example"}, false, true},
		{Address{"joe", "a\u200d.example"}, true, true}, // not convertible
	} {
		if got := NeedsSMTPUTF8(tt.a); got != tt.need {
			t.Errorf("NeedsSMTPUTF8(%v) = %v, want %v", tt.a, got, tt.need)
		}
		if got := HasNonASCII(tt.a); got != tt.non8 {
			t.Errorf("HasNonASCII(%v) = %v, want %v", tt.a, got, tt.non8)
		}
	}
}

func TestParsePath(t *testing.T) {
	type res struct {
		addr  Address
		route []string
	}
	ok := []struct {
		in     string
		strict bool
		want   res
	}{
		{"<user@example.com>", true, res{Address{"user", "example.com"}, nil}},
		{"<user@example.com>", false, res{Address{"user", "example.com"}, nil}},
		{"<>", true, res{}},
		{"<>", false, res{}},
		{"<@a,@b:user@c>", true, res{Address{"user", "c"}, []string{"a", "b"}}},
		{"<@a.example:user@c>", false, res{Address{"user", "c"}, []string{"a.example"}}},
		{`<"a b"@example.com>`, true, res{Address{"a b", "example.com"}, nil}},
		{`<"a\"b"@example.com>`, true, res{Address{`a"b`, "example.com"}, nil}},
		{"<user@[192.0.2.1]>", true, res{Address{"user", "[192.0.2.1]"}, nil}},
		{"<user@[IPv6:2001:db8::1]>", true, res{Address{"user", "[IPv6:2001:db8::1]"}, nil}},
		{"<postmaster>", true, res{Address{"postmaster", ""}, nil}},
		{"user@example.com", false, res{Address{"user", "example.com"}, nil}},
		{" <user@example.com> ", false, res{Address{"user", "example.com"}, nil}},
		{"Joe <user@example.com>", false, res{Address{"user", "example.com"}, nil}},
		{"user@example.com (Joe)", false, res{Address{"user", "example.com"}, nil}},
		{"<jöe@bücher.example>", true, res{Address{"jöe", "bücher.example"}, nil}},
	}
	for _, tt := range ok {
		p, err := ParsePath(tt.in, PathOptions{Strict: tt.strict, AllowNull: true})
		if err != nil {
			t.Errorf("ParsePath(%q, strict=%v) error %v", tt.in, tt.strict, err)
			continue
		}
		if p.Address != tt.want.addr || !reflect.DeepEqual(p.Route, tt.want.route) {
			t.Errorf("ParsePath(%q, strict=%v) = %+v, want %+v", tt.in, tt.strict, p, tt.want)
		}
	}
	bad := []struct {
		in     string
		strict bool
		null   bool
		want   string
	}{
		{"user@example.com", true, true, "enclosed in <>"},
		{"<user@example.com", true, true, "enclosed in <>"},
		{"<user @example.com>", true, true, "whitespace"},
		{"<user@example.com (x)>", true, true, "comment"},
		{"<Joe <a@b>>", true, true, "nested"},
		{"<>", true, false, "null address not allowed"},
		{"<>", false, false, "null address not allowed"},
		{"", false, true, "missing address"},
		{"<a@b> <c@d>", false, true, "unexpected"},
		{"a@b c@d", false, true, "more than one address"},
		{"<user@exa mple.com>", false, true, "missing '.' between words of domain"},
		{"<us er@example.com>", false, true, "missing '.' between words of local part"},
		{"<user@-bad.example>", false, true, "misplaced hyphen"},
		{"<user@1.2.3.4>", true, true, "numeric"},
		{"<user@[1.2.3]>", true, true, "bad IPv4"},
		{`<"user@example.com>`, true, true, "unterminated quoted string"},
		{"<@a:>", true, true, "without a mailbox"},
		{"<@a,b:u@c>", true, true, "expected '@'"},
		{"<@example.com>", true, true, "empty local part"},
		{"<user@>", true, true, "missing domain"},
		{"g: a@b;", false, true, "group"},
		// The domain check rejects a trailing dot after a literal as
		// after a host name.
		{"<user@[192.0.2.1].>", true, true, "address literal"},
		{"<user@example.com.>", true, true, "misplaced dot"},
	}
	for _, tt := range bad {
		_, err := ParsePath(tt.in, PathOptions{Strict: tt.strict, AllowNull: tt.null})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePath(%q, strict=%v) = %v, want error containing %q", tt.in, tt.strict, err, tt.want)
		}
	}
	// NoDomainCheck: the domain is judged later, after canonicalization,
	// as Postfix's smtpd does: it takes "<u@[192.0.2.1].>" (trivial-rewrite
	// removes the dot) and "<u@example.com.>" alike; "<u@a.[1.2.3.4]>"
	// and a literal followed by an atom are no domain at all.
	for _, strict := range []bool{false, true} {
		for in, want := range map[string]Address{
			"<u@[192.0.2.1].>":    {"u", "[192.0.2.1]."},
			"<u@[IPv6:::1].>":     {"u", "[IPv6:::1]."},
			"<u@[192.0.2.1]..>":   {"u", "[192.0.2.1].."},
			"<u@example.com.>":    {"u", "example.com."},
			"<@r:u@[192.0.2.1].>": {"u", "[192.0.2.1]."},
		} {
			p, err := ParsePath(in, PathOptions{Strict: strict, NoDomainCheck: true})
			if err != nil || p.Address != want {
				t.Errorf("ParsePath(%q, strict=%v, NoDomainCheck) = %+v, %v; want %+v", in, strict, p.Address, err, want)
			}
		}
		for _, in := range []string{"<u@a.[192.0.2.1]>", "<u@[192.0.2.1].x>", "<u@[192.0.2.1][1.2.3.4]>"} {
			if _, err := ParsePath(in, PathOptions{Strict: strict, NoDomainCheck: true}); err == nil || !strings.Contains(err.Error(), "domain") {
				t.Errorf("ParsePath(%q, strict=%v, NoDomainCheck) = %v, want a domain error", in, strict, err)
			}
		}
	}
}

func TestParseList(t *testing.T) {
	type mb struct{ name, local, domain, group string }
	tests := []struct {
		in   string
		want []mb
	}{
		{"a@b.example", []mb{{"", "a", "b.example", ""}}},
		{"Joe Q. Public <joe@x.example>", []mb{{"Joe Q. Public", "joe", "x.example", ""}}},
		{`"Smith, Joe" <joe@x>, ann@y`, []mb{{"Smith, Joe", "joe", "x", ""}, {"", "ann", "y", ""}}},
		{"joe@x (Joe Smith)", []mb{{"", "joe", "x", ""}}},
		{"a@b c@d", []mb{{"", "a", "b", ""}, {"", "c", "d", ""}}},
		{"a, b ,,c", []mb{{"", "a", "", ""}, {"", "b", "", ""}, {"", "c", "", ""}}},
		{"team: a@x, B <b@y>; c@z", []mb{{"", "a", "x", "team"}, {"B", "b", "y", "team"}, {"", "c", "z", ""}}},
		{"undisclosed-recipients:;", nil},
		{`"a b"@x`, []mb{{"", "a b", "x", ""}}},
		{`a."b c".d@x`, []mb{{"", "a.b c.d", "x", ""}}},
		{"@other.example", []mb{{"", "", "other.example", ""}}},
		{"<>", []mb{{"", "", "", ""}}},
		{"u@[192.0.2.1]", []mb{{"", "u", "[192.0.2.1]", ""}}},
		{"Joe <@r1,@r2:joe@x>", []mb{{"Joe", "joe", "x", ""}}},
		{"x\\y@z", []mb{{"", "xy", "z", ""}}},
		{"(c1) a@b (c2), (c3) c@d", []mb{{"", "a", "b", ""}, {"", "c", "d", ""}}},
		{"", nil},
	}
	for _, tt := range tests {
		got, err := ParseList(tt.in)
		if err != nil {
			t.Errorf("ParseList(%q) error %v", tt.in, err)
			continue
		}
		var g []mb
		for _, m := range got {
			g = append(g, mb{m.Name, m.Address.Local, m.Address.Domain, m.Group})
		}
		if !reflect.DeepEqual(g, tt.want) {
			t.Errorf("ParseList(%q) = %+v, want %+v", tt.in, g, tt.want)
		}
	}
	// Offsets point at the address text, so that a rewriter can splice.
	in := `Joe <joe@x>, "A B"@y (c)`
	got, err := ParseList(in)
	if err != nil || len(got) != 2 {
		t.Fatalf("ParseList(%q) = %v, %v", in, got, err)
	}
	if s := in[got[0].Start:got[0].End]; s != "joe@x" {
		t.Errorf("span 0 = %q", s)
	}
	if s := in[got[1].Start:got[1].End]; s != `"A B"@y` {
		t.Errorf("span 1 = %q", s)
	}
	for in, want := range map[string]string{
		`"unterminated`: "unterminated quoted string",
		"(unterminated": "unterminated comment",
		"a@[1.2.3.4":    "unterminated domain literal",
		"Joe <a@b":      "no matching '>'",
		"Joe <a@b> x":   `unexpected "x" after '>'`,
		"a@b>":          `unexpected ">"`,
		"a@":            "missing domain",
		`a@"b"`:         "in domain",
		"a;b":           `unexpected ";"`,
		"J [x] <a@b>":   "display name",
		"<a@b@>":        "missing domain",
	} {
		_, err := ParseList(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseList(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestFormatMailbox(t *testing.T) {
	for _, tt := range []struct {
		m    Mailbox
		want string
	}{
		{Mailbox{Address: Address{"a", "b"}}, "a@b"},
		{Mailbox{Name: "Joe Q", Address: Address{"a b", "b"}}, `Joe Q <"a b"@b>`},
		{Mailbox{Name: "Smith, Joe", Address: Address{"a", "b"}}, `"Smith, Joe" <a@b>`},
		{Mailbox{}, "<>"},
	} {
		if got := FormatMailbox(tt.m); got != tt.want {
			t.Errorf("FormatMailbox(%+v) = %q, want %q", tt.m, got, tt.want)
		}
		back, err := ParseList(FormatMailbox(tt.m))
		if err != nil || len(back) != 1 || back[0].Address != tt.m.Address || back[0].Name != tt.m.Name {
			t.Errorf("round trip of %q = %+v, %v", FormatMailbox(tt.m), back, err)
		}
	}
}

package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConfigExpandForms(t *testing.T) {
	vars := map[string]string{"a": "1", "e": "", "n": "$a", "lv": "3.6"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for _, tc := range []struct{ in, want, err string }{
		{"$a${a}$(a)$$", "111$", ""},
		{"${a?x} ${a:x} ${e?x} ${e:x} ${u?x} ${u:x}", "x   x  x", ""},
		{"${a?{p}:{q}} ${e?{p}:{q}}", "p q", ""},
		{"${{$a} == {1} ? {eq} : {ne}} ${{$a} != {1}?{eq}:{ne}}", "eq ne", ""},
		{"${{01} == {1}?{y}:{n}} ${{10} < {9}?{y}:{n}} ${{10} < {9x}?{y}:{n}}", "y n y", ""},
		{"${{$lv} <level {3.10}?{lt}:{ge}} ${{3.6.1} >level {3.6}?{gt}:{le}}", "lt gt", ""},
		{"${{1}=={1}}", "true", ""},
		{"$n", "1", ""}, // recursive
		{"$a-b $a.b ${a?x}y}", "1-b 1.b xy}", ""},
		{"${ a ?x}", "x", ""},
		{"${a", "", `truncated macro reference: "${a"`},
		{"$", "", `empty macro name: "$"`},
		{"${a b}", "", `attribute name syntax error at: "...a>>> b"`},
		{"${e:{x}:{y}}", "", `unexpected input at: "...x}>>>:{y}"`},
		{"${a?{x} y}", "", `":" expected at: "...x}>>>y"`},
		{"${{1} <level {x}?a:b}", "", `malformed compatibility level syntax: "x"`},
		{"${{1} ~ {1}?a:b}", "", `expected at: "...1}>>>~ {1}?a:b"`},
	} {
		e := Expander{Lookup: lookup, Recursive: true}
		got, err := e.Expand(tc.in)
		if tc.err != "" {
			var xe *ExpandError
			if !errors.As(err, &xe) || !strings.Contains(xe.Msg, tc.err) {
				t.Errorf("Expand(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	// Non-recursive Expand inserts values literally.
	if got, _ := Expand("$n", lookup); got != "$a" {
		t.Errorf("Expand non-recursive = %q", got)
	}
}

func TestConfigRecursion(t *testing.T) {
	c, err := Parse("main.cf", strings.NewReader("a1 = $a2\na2 = $a1\nmyorigin = $a1\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Lookup("myorigin")
	var pe *ParamError
	if !errors.As(err, &pe) || pe.Param != "myorigin" || !strings.Contains(err.Error(), `unreasonable macro call nesting: "a2"`) {
		t.Errorf("err = %v", err)
	}
}

// TestConfigExpandBlowup: values that each refer to the next twice
// would take 2^40 steps; expansion must stop with an error instead.
func TestConfigExpandBlowup(t *testing.T) {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "p%d = $p%d$p%d\n", i, i+1, i+1)
	}
	b.WriteString("p40 = x\n")
	c, err := Parse("main.cf", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Lookup("p0")
	var xe *ExpandError
	if !errors.As(err, &xe) || !strings.Contains(xe.Msg, "macro expansion too large") {
		t.Errorf("Lookup(p0) error %v, want macro expansion too large", err)
	}
}

func TestConfigParse(t *testing.T) {
	src := "  lead = 1\ncompatibility_level = 3.6\nfoo = a\n  b\n# c\n\tc\nbar = x # y\nfoo = last\n"
	c, err := Parse("/x/main.cf", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Raw("bar"); v != "x # y" {
		t.Errorf("bar = %q", v)
	}
	if v, _ := c.Raw("foo"); v != "last" || c.Line("foo") != 8 {
		t.Errorf("foo = %q line %d", v, c.Line("foo"))
	}
	// Setting the same value again is not warned about.
	if c2, _ := Parse("m", strings.NewReader("a = 1\na = 1\na=2\n")); len(c2.Warnings()) != 1 {
		t.Errorf("same-value override warnings: %v", c2.Warnings())
	}
	ws := c.Warnings()
	if len(ws) != 2 || ws[1].String() != "/x/main.cf, line 8: overriding earlier entry: foo=a  b?c" ||
		!strings.Contains(ws[0].Text, "logical line must not start with whitespace") {
		t.Errorf("warnings %v", ws)
	}
	for _, bad := range []struct{ src, msg string }{
		{"a = 1\nfoo\n", `line 2: missing '=' after attribute name: "foo"`},
		{"= y\n", `line 1: missing attribute name: "= y"`},
	} {
		_, err := Parse("m", strings.NewReader(bad.src))
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("Parse(%q) = %v, want %s", bad.src, err, bad.msg)
		}
	}
}

func TestConfigCompatDefaults(t *testing.T) {
	for _, tc := range []struct{ level, relay, style, adm string }{
		{"0", "vm.localdomain, localhost.localdomain, localhost", "subnet", "yes"},
		{"2", "", "host", "no"},
		{"3.6", "", "host", "no"},
	} {
		c, _ := Parse("m", strings.NewReader("compatibility_level = "+tc.level+"\n"))
		c.SetHost(Host{Hostname: "vm", Interfaces: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")}})
		if g := c.Get("relay_domains"); g != tc.relay {
			t.Errorf("level %s relay_domains = %q", tc.level, g)
		}
		if g := c.Get("mynetworks_style"); g != tc.style {
			t.Errorf("level %s style = %q", tc.level, g)
		}
		if g := c.Get("append_dot_mydomain"); g != tc.adm {
			t.Errorf("level %s append_dot_mydomain = %q", tc.level, g)
		}
	}
	c := Default()
	c.SetHost(Host{Hostname: "mx.example.com", Interfaces: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/16"), netip.MustParsePrefix("2001:db8::5/64")}})
	for name, want := range map[string]string{"myhostname": "mx.example.com", "mydomain": "example.com", "myorigin": "mx.example.com", "mynetworks": "10.1.0.0/16 [2001:db8::]/64"} {
		if g := c.Get(name); g != want {
			t.Errorf("%s = %q, want %q", name, g, want)
		}
	}
	c.Set("mynetworks_style", "class")
	if g := c.Get("mynetworks"); g != "10.0.0.0/8 [2001:db8::]/64" {
		t.Errorf("class mynetworks = %q", g)
	}
}

// TestConfigStartupDefaults: myhostname and mydomain defaults are
// computed when only main.cf settings are defined (Postfix 3.7 behaviour,
// checked against postconf by TestPostconfOracleRandom).
func TestConfigStartupDefaults(t *testing.T) {
	for _, tc := range []struct{ src, name, want string }{
		{"myhostname = $alias_maps.example\n", "mydomain", "example"},
		{"mydomain = a$compatibility_level.b\n", "myhostname", "vm.a.b"},
		{"compatibility_level = 2\nmydomain = a$compatibility_level.b\n", "myhostname", "vm.a2.b"},
		{"mydomain = $myhostname\n", "myhostname", "vm."},
	} {
		c, err := Parse("m", strings.NewReader(tc.src))
		if err != nil {
			t.Fatal(err)
		}
		c.SetHost(Host{Hostname: "vm"})
		if got := c.Get(tc.name); got != tc.want {
			t.Errorf("%q: %s = %q, want %q", tc.src, tc.name, got, tc.want)
		}
	}
	if _, err := Default().ExpandStartup("${{$compatibility_level} <level {1} ? {a} : {b}}"); err == nil {
		t.Error("ExpandStartup: a <level comparison with an unset compatibility_level succeeded")
	}
}

func TestConfigGetters(t *testing.T) {
	c := Default()
	c.Set("maximal_queue_lifetime", "2")
	c.Set("delay_warning_time", "4")
	c.Set("queue_run_delay", "1m")
	c.Set("smtp_connect_timeout", "30")
	c.Set("bad_time", "5x")
	for name, want := range map[string]time.Duration{
		"maximal_queue_lifetime": 48 * time.Hour, "bounce_queue_lifetime": 5 * 24 * time.Hour,
		"delay_warning_time": 4 * time.Hour, "queue_run_delay": time.Minute, "smtp_connect_timeout": 30 * time.Second,
		"minimal_backoff_time": 300 * time.Second,
	} {
		if d, err := c.Duration(name); err != nil || d != want {
			t.Errorf("Duration(%s) = %v, %v; want %v", name, d, err, want)
		}
	}
	if _, err := c.Duration("bad_time"); err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "bad_time") {
		t.Errorf("bad_time: %v", err)
	}
	if n, err := c.Size("message_size_limit"); err != nil || n != 10240000 {
		t.Errorf("Size = %d, %v", n, err)
	}
	if b, err := c.Bool("smtpd_delay_reject"); err != nil || !b {
		t.Errorf("Bool = %v, %v", b, err)
	}
	c.Set("smtpd_delay_reject", "maybe")
	if _, err := c.Bool("smtpd_delay_reject"); err == nil {
		t.Error("Bool(maybe) succeeded")
	}
	if n, err := c.Int("hopcount_limit"); err != nil || n != 50 {
		t.Errorf("Int = %d, %v", n, err)
	}
	if _, err := c.Int("nosuch"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Int(nosuch) = %v", err)
	}
}

func TestConfigSplitList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a, b\tc\n d,,e", []string{"a", "b", "c", "d", "e"}},
		{"check_policy_service { inet:127.0.0.1:9998, timeout=10s }, reject", []string{"check_policy_service", "inet:127.0.0.1:9998, timeout=10s", "reject"}},
		{"{ a { b } c } x{y z}", []string{"a { b } c", "x{y z}"}},
		{"  ", nil},
		{"}{", []string{"}{"}},
	} {
		got := SplitList(tc.in)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfigEditText(t *testing.T) {
	src := "# head\n\nfoo = 1\n  cont\n# mid\n\tcont2\nbar = 2 # x\nfoo = again\n# tail"
	for _, tc := range []struct {
		edits []Edit
		want  string
	}{
		{[]Edit{{Op: EditSet, Name: "foo", Value: "new"}, {Op: EditSet, Name: "qux", Value: "5"}},
			"# head\n\nfoo = new\n# mid\nbar = 2 # x\nfoo = new\n# tailqux = 5\n"},
		{[]Edit{{Op: EditRemove, Name: "foo"}}, "# head\n\n# mid\nbar = 2 # x\n# tail"},
		{[]Edit{{Op: EditComment, Name: "foo"}}, "# head\n\n#foo = 1\n#  cont\n# mid\n#\tcont2\nbar = 2 # x\n#foo = again\n# tail"},
		{nil, src},
	} {
		got, warns := EditText("m", []byte(src), tc.edits)
		if string(got) != tc.want {
			t.Errorf("%v:\n got %q\nwant %q", tc.edits, got, tc.want)
		}
		if len(tc.edits) > 0 && (len(warns) != 1 || warns[0].Text != `multiple entries for "foo"`) {
			t.Errorf("%v: warnings %v", tc.edits, warns)
		}
	}
}

func FuzzConfigParse(f *testing.F) {
	for _, s := range []string{"a = 1\n  b\n# c\n\td\n", "a = $b\nb = ${a?{x}:{y}}\n", "=\n", "  x\ny = ${{1}<level{2}?a:b}\n",
		"a = $b$b\nb = $c$c\nc = $d$d\nd = $e$e\ne = $f$f\nf = $g$g\ng = $h$h\nh = x\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse("m", strings.NewReader(s))
		if err != nil {
			return
		}
		for _, n := range c.Names() {
			c.Lookup(n)
			c.List(n)
		}
		EditText("m", []byte(s), []Edit{{Op: EditSet, Name: "a", Value: "1"}})
		// No edits: the text comes back byte for byte.
		if out, _ := EditText("m", []byte(s), nil); string(out) != s {
			t.Errorf("EditText without edits changed %q to %q", s, out)
		}
	})
}

func FuzzConfigExpand(f *testing.F) {
	for _, s := range []string{"$a${b}$(c)$$", "${a?{x}:{y}}", "${{$a} == {1} ? {p} : {q}}", "${{3.6} <level {2}}", "${a", "$(a))"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vars := map[string]string{"a": s, "b": "$a", "c": ""}
		e := Expander{Recursive: true, Lookup: func(n string) (string, bool) { v, ok := vars[n]; return v, ok }}
		e.Expand(s)
		References(s)
		SplitList(s)
		// Text without '$' is left alone.
		if !strings.Contains(s, "$") {
			if got, err := e.Expand(s); err != nil || got != s {
				t.Errorf("Expand(%q) = %q, %v", s, got, err)
			}
		}
	})
}

package maps

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// cidrOracleQuery runs the real "postmap -q - cidr:..." over keys and
// returns what it printed.
func cidrOracleQuery(t testing.TB, spec string, keys []string) (stdout, stderr string) {
	t.Helper()
	dir := oracle.ConfigDir(t, "")
	res := oracle.Run(t, []byte(strings.Join(keys, "\n")+"\n"), "postmap", "-c", dir, "-q", "-", spec)
	if res.Code != 0 && res.Code != 1 {
		t.Fatalf("postmap -q - %s: exit %d: %s", spec, res.Code, res.Stderr)
	}
	return string(res.Stdout), string(res.Stderr)
}

// cidrOurQuery opens spec with postkit and prints what postmap -q - would.
func cidrOurQuery(t testing.TB, spec string, keys []string) (stdout, stderr string) {
	t.Helper()
	var warns strings.Builder
	opts := Options{Warn: func(w Warning) { fmt.Fprintf(&warns, "postmap: warning: %s\n", w) }}
	m, err := NewRegistry().Open(context.Background(), spec, opts)
	if err != nil {
		t.Fatalf("open %s: %v", spec, err)
	}
	var out strings.Builder
	for _, k := range keys {
		v, ok, err := m.Lookup(context.Background(), k)
		if err != nil {
			t.Fatalf("lookup %q: %v", k, err)
		}
		if ok {
			fmt.Fprintf(&out, "%s\t%s\n", k, v)
		}
	}
	return out.String(), warns.String()
}

// cidrFormatAddr prints a of family fam.
func cidrFormatAddr(fam int, a cidrAddr) string {
	if fam == 4 {
		return netip.AddrFrom4([4]byte{byte(a.hi >> 56), byte(a.hi >> 48), byte(a.hi >> 40), byte(a.hi >> 32)}).String()
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(a.hi >> (56 - 8*i))
		b[8+i] = byte(a.lo >> (56 - 8*i))
	}
	return netip.AddrFrom16(b).String()
}

// cidrAdd adds d (may be negative) to a, wrapping within the family.
func cidrAdd(fam int, a cidrAddr, d int64) cidrAddr {
	if fam == 4 {
		v := uint32(a.hi>>32) + uint32(d)
		return cidrAddr{uint64(v) << 32, 0}
	}
	lo := a.lo + uint64(d)
	hi := a.hi
	if d > 0 && lo < a.lo {
		hi++
	} else if d < 0 && lo > a.lo {
		hi--
	}
	return cidrAddr{hi, lo}
}

// cidrBoundaryKeys returns keys at and around the edges of every pattern
// found in the rules: the first and last address, and the neighbours
// outside.
func cidrBoundaryKeys(text string, r *rand.Rand) []string {
	var keys []string
	for _, f := range strings.Fields(text) {
		f = strings.TrimPrefix(f, "!")
		f = strings.NewReplacer("[", "", "]", "", "{", "", "}", "", ",", "").Replace(f)
		addr, mask, _ := strings.Cut(f, "/")
		fam, a, ok := cidrParseKey(addr)
		if !ok {
			continue
		}
		width := 32
		if fam == 6 {
			width = 128
		}
		n := width
		if mask != "" {
			fmt.Sscan(mask, &n)
			n = min(max(n, 0), width)
		}
		first := cidrMask(a, n)
		last := first
		if n < width {
			if width-n >= 63 {
				last = cidrAdd(fam, first, 1<<62)
			} else {
				last = cidrAdd(fam, first, 1<<(width-n)-1)
			}
		}
		for _, k := range []cidrAddr{a, first, last, cidrAdd(fam, first, -1), cidrAdd(fam, last, 1), cidrAdd(fam, first, r.Int64N(1<<min(width-n, 40)+1))} {
			keys = append(keys, cidrFormatAddr(fam, k))
		}
		if fam == 4 {
			// The same address as an IPv4-mapped IPv6 key.
			keys = append(keys, "::ffff:"+cidrFormatAddr(fam, a))
		}
	}
	return keys
}

// cidrOddKeys are keys that must never match or that test key syntax.
var cidrOddKeys = []string{
	"", "[10.1.2.3]", "[::1]", "mail.example.com", "10.1.2", "010.1.2.3", "10.01.2.3",
	"10.1.2.3 ", " 10.1.2.3", "10.1.2.3.", "256.1.1.1", "::ffff:10.1.2.3", "::10.1.2.3",
	"fe80::1%eth0", "FE80::1", "2001:DB8:0:0::1", "2001:0db8::1", "::", "0.0.0.0",
	"255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "1:2:3:4:5:6:7::8",
	"1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:1.2.3.4", "10.1.2.3/32", "unknown",
	"192.168.1.1", "172.16.5.4", "127.0.0.1", "::1", "2001:db8::1",
}

// TestCIDROracleCorpus compares postkit with the real postmap on every
// hand-written table in testdata/cidr: lookups byte for byte, and the
// warnings printed while loading.
func TestCIDROracleCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/cidr/*.cidr")
	if err != nil || len(files) < 15 {
		t.Fatalf("want at least 15 tables in testdata/cidr, have %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel() // postmap takes a while to start; overlap the runs
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), filepath.Base(f))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, uint64(len(data))))
			keys := append(cidrBoundaryKeys(string(data), r), cidrOddKeys...)
			cidrCompareOracle(t, "cidr:"+path, keys)
		})
	}
}

// cidrCompareOracle compares postkit's lookups and warnings for keys with
// "postmap -q -". It returns what postmap printed, for callers that must
// make sure their keys found something.
func cidrCompareOracle(t *testing.T, spec string, keys []string) string {
	t.Helper()
	wantOut, wantErr := cidrOracleQuery(t, spec, keys)
	gotOut, gotErr := cidrOurQuery(t, spec, keys)
	if gotOut != wantOut {
		t.Errorf("%s: lookups differ\n%s", spec, oracle.Diff(wantOut, gotOut))
	}
	if gotErr != wantErr {
		t.Errorf("%s: warnings differ\npostmap:\n%spostkit:\n%s", spec, wantErr, gotErr)
	}
	return wantOut
}

// TestCIDROracleInline checks Postfix 3.7's inline form against postmap.
func TestCIDROracleInline(t *testing.T) {
	specs := []string{
		"cidr:{ {10.0.0.0/8 ten  x }, {1.2.3.4/8 bad}, {!2.0.0.0/8 nottwo}, { if 3.0.0.0/8 }, {3.3.3.3 three}, {endif} }",
		"cidr:{{192.168.0.0/16 lan},{[::1] loop}}",
		"cidr:{ {if !10.0.0.0/8}, {0.0.0.0/0 notten}, {endif}, {10.1.0.0/16 ten-one} }",
		"cidr:{ }",
		"cidr:{ {if 1.0.0.0/8} }",
		"cidr:{ {endif}, {010.0.0.0/8 octal}, {::ffff:10.0.0.0/104 mapped} }",
	}
	keys := append([]string{"10.1.1.1", "2.2.2.2", "3.3.3.3", "1.2.3.4", "192.168.7.7", "::1", "::ffff:10.1.1.1", "11.0.0.1"}, cidrOddKeys...)
	for i, spec := range specs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			cidrCompareOracle(t, spec, keys)
		})
	}
	// Syntax errors in the inline text fail the open, as they are fatal in
	// Postfix.
	for _, spec := range []string{"cidr:{10.0.0.0/8 x}", "cidr:{ {10.0.0.0/8 x}, 1.2.3.4 y }", "cidr:{{10.0.0.0/8 a}{11.0.0.0/8 b}}"} {
		dir := oracle.ConfigDir(t, "")
		res := oracle.Run(t, []byte("10.1.1.1\n"), "postmap", "-c", dir, "-q", "-", spec)
		if !strings.Contains(string(res.Stderr), "fatal") {
			t.Fatalf("postmap accepted %s: %s", spec, res.Stderr)
		}
		_, err := NewRegistry().Open(context.Background(), spec, Options{})
		if err == nil {
			t.Errorf("%s: open succeeded, postmap said %s", spec, res.Stderr)
			continue
		}
		msg := strings.TrimSpace(strings.TrimPrefix(string(res.Stderr), "postmap: fatal: "))
		if !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %q does not contain postmap's %q", spec, err, msg)
		}
	}
}

// cidrRandomTable writes a random table: rules with random prefixes drawn
// around a few base networks (so they nest and overlap), negations, if
// blocks, and now and then a bad rule.
func cidrRandomTable(r *rand.Rand, nrules int) string {
	var bases4 []uint32
	var bases6 []cidrAddr
	for i := 0; i < 12; i++ {
		bases4 = append(bases4, r.Uint32())
		bases6 = append(bases6, cidrAddr{r.Uint64(), r.Uint64()})
	}
	pattern := func() string {
		var s string
		if r.IntN(10) < 7 {
			n := r.IntN(33)
			a := bases4[r.IntN(len(bases4))] ^ (r.Uint32() >> r.IntN(33))
			if r.IntN(30) != 0 {
				a = uint32(cidrMask(cidrAddr{uint64(a) << 32, 0}, n).hi >> 32)
			}
			s = cidrFormatAddr(4, cidrAddr{uint64(a) << 32, 0})
			if r.IntN(8) == 0 {
				s = "[" + s + "]"
			}
			if n != 32 || r.IntN(2) == 0 {
				s += fmt.Sprintf("/%d", n)
			}
			return s
		}
		n := r.IntN(129)
		b := bases6[r.IntN(len(bases6))]
		a := cidrAddr{b.hi ^ (r.Uint64() >> r.IntN(65)), b.lo ^ (r.Uint64() >> r.IntN(65))}
		if r.IntN(10) == 0 {
			a = cidrAddr{0, 0xffff<<32 | uint64(bases4[r.IntN(len(bases4))])}
		}
		if r.IntN(30) != 0 {
			a = cidrMask(a, n)
		}
		s = cidrFormatAddr(6, a)
		if r.IntN(8) == 0 {
			s = "[" + s + "]"
		}
		if n != 128 || r.IntN(2) == 0 {
			s += fmt.Sprintf("/%d", n)
		}
		return s
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < nrules; i++ {
		switch x := r.IntN(100); {
		case x < 8:
			neg := ""
			if r.IntN(3) == 0 {
				neg = "!"
			}
			fmt.Fprintf(&b, "if %s%s\n", neg, pattern())
			depth++
		case x < 16 && depth > 0:
			b.WriteString("endif\n")
			depth--
		case x < 26:
			fmt.Fprintf(&b, "!%s r%d\n", pattern(), i)
		case x < 28:
			fmt.Fprintf(&b, "%s\n", pattern()) // no result
		case x < 29:
			b.WriteString("# a comment\n")
		case x < 30:
			fmt.Fprintf(&b, "%s r%d\n  continued\n", pattern(), i)
		default:
			fmt.Fprintf(&b, "%s r%d\n", pattern(), i)
		}
	}
	for ; depth > 0; depth-- {
		if r.IntN(4) != 0 {
			b.WriteString("endif\n")
		}
	}
	return b.String()
}

// TestCIDROracleRandom compares postkit with postmap on seeded random
// tables and keys near their prefix boundaries.
func TestCIDROracleRandom(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			cidrOracleRandom(t, seed)
		})
	}
}

func cidrOracleRandom(t *testing.T, seed uint64) {
	{
		r := rand.New(rand.NewPCG(seed, 42))
		text := cidrRandomTable(r, 300)
		path := filepath.Join(t.TempDir(), fmt.Sprintf("random%d.cidr", seed))
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		keys := cidrBoundaryKeys(text, r)
		for i := 0; i < 500; i++ {
			keys = append(keys, cidrFormatAddr(4, cidrAddr{uint64(r.Uint32()) << 32, 0}))
		}
		if cidrCompareOracle(t, "cidr:"+path, keys) == "" {
			t.Errorf("postmap found none of %d keys: the comparison proves nothing", len(keys))
		}
	}
}

// cidrLinear is the reference evaluator: it walks the rules in order as
// Postfix does, skipping an if block whose condition fails.
func cidrLinear(text, key string) (string, bool) {
	fam, a, ok := cidrParseKey(key)
	if !ok {
		return "", false
	}
	type rule struct {
		kind      int // 0 rule, 1 if, 2 endif
		fam, bits int
		net       cidrAddr
		neg       bool
		value     string
	}
	var rules []rule
	// Parse with the production compiler's warnings switched off, but by
	// re-reading the lines here so the evaluation is independent.
	depth := 0
	for _, l := range cidrLogicalLines([]byte(text), "x", func(Warning) {}) {
		s := l.text
		switch {
		case cidrFold(s, "if"):
			p := trimLeftSpace(s[2:])
			neg := strings.HasPrefix(p, "!")
			if neg {
				p = trimLeftSpace(p[1:])
			}
			if p == "" {
				continue
			}
			f, net, n, why := cidrPattern(p)
			if why != "" {
				continue
			}
			rules = append(rules, rule{kind: 1, fam: f, bits: n, net: net, neg: neg})
			depth++
		case cidrFold(s, "endif"):
			if trimLeftSpace(s[5:]) != "" || depth == 0 {
				continue
			}
			rules = append(rules, rule{kind: 2})
			depth--
		default:
			neg := strings.HasPrefix(s, "!")
			p := s
			if neg {
				p = trimLeftSpace(s[1:])
			}
			pat, value := p, ""
			if i := strings.IndexFunc(p, func(c rune) bool { return c < 0x80 && isSpace(byte(c)) }); i >= 0 {
				pat, value = p[:i], trimLeftSpace(p[i:])
			}
			if pat == "" {
				continue
			}
			f, net, n, why := cidrPattern(pat)
			if why != "" || value == "" {
				continue
			}
			rules = append(rules, rule{fam: f, bits: n, net: net, neg: neg, value: value})
		}
	}
	match := func(r rule) bool {
		return r.fam == fam && cidrContains(r.net, r.bits, a) != r.neg
	}
	for i := 0; i < len(rules); i++ {
		r := rules[i]
		switch r.kind {
		case 0:
			if match(r) {
				return r.value, true
			}
		case 1:
			if !match(r) {
				// Skip to the matching endif.
				d := 1
				for i++; i < len(rules) && d > 0; i++ {
					switch rules[i].kind {
					case 1:
						d++
					case 2:
						d--
					}
				}
				i--
			}
		}
	}
	return "", false
}

// TestCIDRTrieMatchesLinear checks the trie against the linear reference on
// many random tables and keys.
func TestCIDRTrieMatchesLinear(t *testing.T) {
	for seed := uint64(1); seed <= 60; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		text := cidrRandomTable(r, 10+r.IntN(200))
		tab := cidrCompile(cidrLogicalLines([]byte(text), "x", func(Warning) {}), "x", func(Warning) {})
		keys := cidrBoundaryKeys(text, r)
		for i := 0; i < 200; i++ {
			keys = append(keys, cidrFormatAddr(4, cidrAddr{uint64(r.Uint32()) << 32, 0}))
		}
		for _, k := range keys {
			want, wok := cidrLinear(text, k)
			got, gok := "", false
			if fam, a, ok := cidrParseKey(k); ok {
				if i := tab.lookup(fam, a); i >= 0 {
					got, gok = tab.rules[i].result, true
				}
			}
			if got != want || gok != wok {
				t.Fatalf("seed %d key %s: trie %q %v, linear %q %v\ntable:\n%s", seed, k, got, gok, want, wok, text)
			}
		}
	}
}

// TestCIDRRules checks the rules of cidr_table(5) that a user relies on.
func TestCIDRRules(t *testing.T) {
	table := `# clients
10.0.0.0/8          ten
!192.168.0.0/16     not-lan
[172.16.0.0]/12     bracketed
2001:0db8::/32      doc
::ffff:10.0.0.0/104 mapped
`
	path := filepath.Join(t.TempDir(), "clients")
	if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := NewRegistry().Open(context.Background(), "cidr:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if KindOf(m) != Pattern {
		t.Errorf("cidr table is not a pattern table")
	}
	if _, ok := m.(Iterable); ok {
		t.Errorf("cidr table is iterable; postmap -s refuses cidr tables")
	}
	for _, tc := range []struct{ key, want string }{
		{"10.1.2.3", "ten"},
		{"11.1.2.3", "not-lan"},
		{"192.168.1.1", ""},
		{"[10.1.2.3]", ""},
		{"mail.example.com", ""},
		{"2001:DB8:0:0::1", "doc"},
		{"::ffff:10.1.1.1", "mapped"},
		{"::1", ""},
	} {
		v, ok, err := m.Lookup(context.Background(), tc.key)
		if err != nil || v != tc.want || ok != (tc.want != "") {
			t.Errorf("Lookup(%q) = %q, %v, %v; want %q", tc.key, v, ok, err, tc.want)
		}
	}
}

// cidrOpenReplaced opens a table answering "old" for 10.0.0.0/8, then
// replaces its file, as postmap-style tools do, with one answering "new".
func cidrOpenReplaced(t *testing.T) Map {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "t")
	if err := os.WriteFile(path, []byte("10.0.0.0/8 old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := NewRegistry().Open(context.Background(), "cidr:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "t.new")
	if err := os.WriteFile(tmp, []byte("10.0.0.0/8 new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCIDRReload checks that a replaced file is picked up.
func TestCIDRReload(t *testing.T) {
	m := cidrOpenReplaced(t)
	cm := m.(*cidrMap)
	if v, _, _ := m.Lookup(context.Background(), "10.1.1.1"); v != "old" {
		t.Fatalf("before the check interval: got %q, want old", v)
	}
	cm.watch.next.Store(0) // as if a second had passed
	if v, _, _ := m.Lookup(context.Background(), "10.1.1.1"); v != "new" {
		t.Fatalf("after replacing the file: got %q, want new", v)
	}
}

// FuzzCIDRTable parses arbitrary table text and checks the trie against the
// linear reference for a few keys.
func FuzzCIDRTable(f *testing.F) {
	f.Add("10.0.0.0/8 ten\n!1.0.0.0/8 x\nif 2.0.0.0/8\n2.2.0.0/16 y\nendif\n", "2.2.3.4")
	f.Add("if !::/1\n::1 z\n[::ffff:1.2.3.0]/120 w\nendif\n", "::1")
	f.Add("[1.2.3.4 x\n1.2.3.4] y\n1.2.3.4/4294967328 z\n", "1.2.3.4")
	f.Add("  lead\nIF 0.0.0.0/0\nENDIF junk\n0.0.0.0/0 all\n", "9.9.9.9")
	f.Fuzz(func(t *testing.T, text, key string) {
		tab := cidrCompile(cidrLogicalLines([]byte(text), "x", func(Warning) {}), "x", func(Warning) {})
		keys := append(cidrBoundaryKeys(text, rand.New(rand.NewPCG(1, 2))), key)
		for _, k := range keys {
			want, wok := cidrLinear(text, k)
			got, gok := "", false
			if fam, a, ok := cidrParseKey(k); ok {
				if i := tab.lookup(fam, a); i >= 0 {
					got, gok = tab.rules[i].result, true
				}
			}
			if got != want || gok != wok {
				t.Fatalf("key %q: trie %q %v, linear %q %v", k, got, gok, want, wok)
			}
		}
		_, _ = cidrSplitInline(text) // must not panic
	})
}

// cidrBenchTable builds a table of n positive /24 and /16 rules plus a few
// negations and if blocks, like a large client blocklist.
func cidrBenchTable(n int) (string, []string) {
	r := rand.New(rand.NewPCG(uint64(n), 9))
	var b strings.Builder
	var keys []string
	for i := 0; i < n; i++ {
		a := r.Uint32()
		switch {
		case i%500 == 100:
			fmt.Fprintf(&b, "!%s/8 neg%d\n", cidrFormatAddr(4, cidrMask(cidrAddr{uint64(a) << 32, 0}, 8)), i)
		case i%1000 == 7:
			fmt.Fprintf(&b, "if %s/12\n%s/20 in%d\nendif\n", cidrFormatAddr(4, cidrMask(cidrAddr{uint64(a) << 32, 0}, 12)),
				cidrFormatAddr(4, cidrMask(cidrAddr{uint64(a) << 32, 0}, 20)), i)
		default:
			l := 24
			if i%4 == 0 {
				l = 16
			}
			fmt.Fprintf(&b, "%s/%d r%d\n", cidrFormatAddr(4, cidrMask(cidrAddr{uint64(a) << 32, 0}, l)), l, i)
		}
		keys = append(keys, cidrFormatAddr(4, cidrAddr{uint64(a) << 32, 0}))
		keys = append(keys, cidrFormatAddr(4, cidrAddr{uint64(r.Uint32()) << 32, 0}))
	}
	return b.String(), keys
}

// BenchmarkCIDRLookup looks up hits and misses in tables of growing size;
// the cost per lookup should stay nearly flat.
func BenchmarkCIDRLookup(b *testing.B) {
	for _, n := range []int{100, 1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			text, keys := cidrBenchTable(n)
			path := filepath.Join(b.TempDir(), "t")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				b.Fatal(err)
			}
			m, err := NewRegistry().Open(context.Background(), "cidr:"+path, Options{Warn: func(Warning) {}})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.Lookup(ctx, keys[i%len(keys)])
			}
		})
	}
}

// BenchmarkCIDRLoad10k measures opening a 10,000-rule file.
func BenchmarkCIDRLoad10k(b *testing.B) {
	text, _ := cidrBenchTable(10000)
	path := filepath.Join(b.TempDir(), "t")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := NewRegistry().Open(context.Background(), "cidr:"+path, Options{Warn: func(Warning) {}}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCIDRReloadByClock checks, without touching the watch, that a
// replaced file is picked up once the coarse clock has moved on (the
// first check is due one to two intervals after opening).
func TestCIDRReloadByClock(t *testing.T) {
	m := cidrOpenReplaced(t)
	deadline := time.Now().Add(3*watchInterval + time.Second)
	for {
		v, _, _ := m.Lookup(context.Background(), "10.1.1.1")
		if v == "new" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %q %v after the file was replaced", v, 3*watchInterval)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

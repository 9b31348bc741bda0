package maps

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// reOurs opens typ:name with a warning collector.
func reOurs(t testing.TB, typ, name string, opts Options) (Map, *[]string) {
	t.Helper()
	var warns []string
	opts.Warn = func(w Warning) { warns = append(warns, "postmap: warning: "+w.String()) }
	m, err := NewRegistry().Open(context.Background(), typ+":"+name, opts)
	if err != nil {
		t.Fatalf("open %s:%s: %v", typ, name, err)
	}
	return m, &warns
}

// reOracleDir is a Postfix configuration for postmap as the oracle of
// pattern tables: smtputf8_enable = no, so that postmap matches keys as
// bytes, as postkit does (and as cleanup does with header_checks).
func reOracleDir(t testing.TB) string {
	return oracle.ConfigDir(t, "smtputf8_enable = no\n")
}

// reQuery renders lookups the way "postmap -q" prints them: "key\tvalue"
// lines for "-q -", the bare value for a single key. An empty result is
// printed (empty) with Postfix's two warnings.
func reQuery(t testing.TB, m Map, spec string, keys []string, single bool, warns *[]string) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		v, ok, err := m.Lookup(context.Background(), k)
		if errors.Is(err, ErrEmptyValue) {
			*warns = append(*warns,
				fmt.Sprintf("postmap: warning: table %s: key %s: empty string result is not allowed", spec, k),
				fmt.Sprintf("postmap: warning: table %s should return NO RESULT in case of NOT FOUND", spec))
			ok, err = true, nil
		}
		if err != nil {
			t.Fatalf("lookup %q: %v", k, err)
		}
		if !ok {
			continue
		}
		if single {
			b.WriteString(v + "\n")
		} else {
			b.WriteString(k + "\t" + v + "\n")
		}
	}
	return b.String()
}

// reKeys reads a key file: one key per line; a line that starts with '"' is
// a Go-quoted key asked on its own ("postmap -q KEY"), for keys with
// newlines or surrounding blanks.
func reKeys(t testing.TB, path string) (batch, single []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if ln == "" {
			continue
		}
		if ln[0] == '"' {
			k, err := strconv.Unquote(ln)
			if err != nil {
				t.Fatalf("%s: bad quoted key %s", path, ln)
			}
			single = append(single, k)
			continue
		}
		batch = append(batch, ln)
	}
	return
}

// reDiff compares postkit with "postmap -q" for one table file and keys:
// stdout byte for byte, and the warnings line for line.
//
// It returns how many bytes postmap printed for the batch, so that callers
// can make sure their keys find something: equal empty outputs prove
// nothing.
func reDiff(t *testing.T, dir, typ, file string, batch, single []string) (hitBytes int) {
	t.Helper()
	spec := typ + ":" + file
	res := oracle.Run(t, []byte(strings.Join(batch, "\n")+"\n"), "postmap", "-c", dir, "-q", "-", spec)
	hitBytes = len(res.Stdout)
	m, warns := reOurs(t, typ, file, Options{})
	got := reQuery(t, m, spec, batch, false, warns)
	if got != string(res.Stdout) {
		t.Errorf("%s: stdout differs:\n%s", spec, reLineDiff(string(res.Stdout), got))
	}
	reCompareWarnings(t, spec, string(res.Stderr), *warns)
	for _, k := range single {
		res := oracle.Run(t, nil, "postmap", "-c", dir, "-q", k, spec)
		m, warns := reOurs(t, typ, file, Options{})
		got := reQuery(t, m, spec, []string{k}, true, warns)
		if got != string(res.Stdout) {
			t.Errorf("%s: key %q: postmap printed %q, postkit %q", spec, k, res.Stdout, got)
		}
		reCompareWarnings(t, spec+" key "+strconv.Quote(k), string(res.Stderr), *warns)
	}
	return hitBytes
}

// reCompareWarnings compares warning lines. PCRE2's error offsets are
// compared only as far as "error in regex at offset": postkit reports the
// same message but not always the same offset.
func reCompareWarnings(t *testing.T, what, stderr string, ours []string) {
	t.Helper()
	theirs := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if stderr == "" {
		theirs = nil
	}
	norm := func(s string) string {
		if i := strings.Index(s, "error in regex at offset"); i >= 0 {
			return s[:i] + "error in regex"
		}
		return s
	}
	a := make([]string, len(theirs))
	for i, s := range theirs {
		a[i] = norm(s)
	}
	b := make([]string, len(ours))
	for i, s := range ours {
		b[i] = norm(s)
	}
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("%s: warnings differ\n--- postmap\n%s\n--- postkit\n%s", what, strings.Join(theirs, "\n"), strings.Join(ours, "\n"))
	}
}

// TestRegexpCorpus and TestPCRECorpus run every hand-written table in
// testdata/<type>/ against the real postmap.
func TestRegexpCorpus(t *testing.T) { reCorpus(t, "regexp") }
func TestPCRECorpus(t *testing.T)   { reCorpus(t, "pcre") }

func reCorpus(t *testing.T, typ string) {
	oracle.Require(t, "postmap")
	dir := reOracleDir(t)
	tables, err := filepath.Glob(filepath.Join("testdata", typ, "*.cf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 20 {
		t.Fatalf("want at least 20 %s tables in testdata/%s, have %d", typ, typ, len(tables))
	}
	hits := 0
	for _, tab := range tables {
		t.Run(filepath.Base(tab), func(t *testing.T) {
			abs, err := filepath.Abs(tab)
			if err != nil {
				t.Fatal(err)
			}
			batch, single := reKeys(t, strings.TrimSuffix(tab, ".cf")+".keys")
			if reDiff(t, dir, typ, abs, batch, single) > 0 {
				hits++
			}
		})
	}
	// Most tables must find something, or the corpus tests little.
	if hits < len(tables)/2 {
		t.Errorf("postmap found keys in only %d of %d %s tables", hits, len(tables), typ)
	}
}

// reGenTable writes a random table: literal-ish patterns with classes,
// alternations, anchors, groups, flags and $n results.
func reGenTable(r *rand.Rand, typ string, n int) string {
	atoms := []string{"a", "b", "c", "x", "y", "z", "A", "B", "é", ".", "[abc]", "[^a]", "[a-c]", "[[:digit:]]", "[[:upper:]]", "0", "1", "-", "@", `\.`, "[.]"}
	junk := []string{"(", ")", "{", "}", "[", "]", "*", "+", "?", "|", `\`, "^", "$", "{2}", "{,2}", "{1,}", "[a-", "[[:alpha:]]", "[[:foo:]]", "\\1"}
	if typ == "pcre" {
		atoms = append(atoms, `\d`, `\w`, `\s`, `[\d]`, `\bx`, `(?i:b)`, `(?-i:B)`, `(a|ab)`, `(?=a)`, `(?!b)`, `a*?`, `(?:x|y)+`, `(a)\1`, `a++`, `\x41`, `\Qa.\E`, `(?<n>c)`, `[^\W]`, `(?<=a|bc)`, `(?<=a+)`, `(?<!(x|yz))`, `(?<=(?:ab){2})`, `(?m)^a`)
	} else {
		atoms = append(atoms, `\w`, `\s`, `\bx`, `[]a]`, `(a|ab)`, `(b|bc)*`, `(a*)*`, `(a)\1`, `\<x`, `y\>`, `[a\]`, `[^]a]`, `a{,2}`, `x\{1\}`, `\(a\)`, `[[.-.]]`, `[[=a=]b]`, `a**`)
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		var p strings.Builder
		groups := 0
		if r.Intn(4) == 0 {
			p.WriteString("^")
		}
		parts := 1 + r.Intn(4)
		for j := 0; j < parts; j++ {
			switch r.Intn(6) {
			case 0:
				groups++
				fmt.Fprintf(&p, "(%s|%s)", atoms[r.Intn(len(atoms))], atoms[r.Intn(len(atoms))])
			case 1:
				groups++
				fmt.Fprintf(&p, "(%s%s)", atoms[r.Intn(len(atoms))], []string{"", "*", "+", "?"}[r.Intn(4)])
			case 2:
				if r.Intn(5) == 0 {
					p.WriteString(junk[r.Intn(len(junk))])
					break
				}
				fallthrough
			default:
				p.WriteString(atoms[r.Intn(len(atoms))])
				p.WriteString([]string{"", "", "", "*", "+", "?", "{1,2}"}[r.Intn(7)])
			}
		}
		if r.Intn(4) == 0 {
			p.WriteString("$")
		}
		flags := ""
		for _, f := range []string{"i", "m", "x", "s", "U", "A", "E"} {
			if r.Intn(6) == 0 && (typ == "pcre" || strings.Contains("imx", f)) {
				flags += f
			}
		}
		neg := ""
		if r.Intn(10) == 0 {
			neg = "!"
		}
		res := fmt.Sprintf("r%d", i)
		// Rules that need a backtracking engine (back-references, \< and
		// \>) choose POSIX captures leftmost-first rather than
		// leftmost-longest (a documented difference): keep them match-only.
		backtrack := false
		if typ == "regexp" {
			tr, _ := reTranslatePOSIX(p.String(), true, true, false)
			backtrack = tr.backtrack
		}
		if neg == "" && groups > 0 && !backtrack && r.Intn(2) == 0 {
			res += fmt.Sprintf("[$%d]", 1+r.Intn(groups))
		}
		delim := "/"
		if r.Intn(8) == 0 {
			delim = "%"
		}
		fmt.Fprintf(&b, "%s%s%s%s%s %s\n", neg, delim, p.String(), delim, flags, res)
	}
	return b.String()
}

func reGenKeys(r *rand.Rand, n int) []string {
	alpha := []string{"a", "b", "c", "x", "y", "z", "A", "B", "C", "X", "é", "É", ".", "0", "1", "-", "@", " ", "_"}
	keys := make([]string, n)
	for i := range keys {
		var k strings.Builder
		for j, l := 0, 1+r.Intn(8); j < l; j++ {
			k.WriteString(alpha[r.Intn(len(alpha))])
		}
		keys[i] = strings.TrimSpace(k.String())
		if keys[i] == "" {
			keys[i] = "q"
		}
	}
	return keys
}

// TestRegexpRandomOracle and TestPCRERandomOracle compare seeded random
// tables and keys with postmap.
func TestRegexpRandomOracle(t *testing.T) { reRandomOracle(t, "regexp") }
func TestPCRERandomOracle(t *testing.T)   { reRandomOracle(t, "pcre") }

func reRandomOracle(t *testing.T, typ string) {
	oracle.Require(t, "postmap")
	dir := reOracleDir(t)
	tmp := t.TempDir()
	seeds := 60
	if testing.Short() {
		seeds = 5
	}
	hits := 0
	for seed := 1; seed <= seeds; seed++ {
		r := rand.New(rand.NewSource(int64(seed)))
		file := filepath.Join(tmp, fmt.Sprintf("gen%d", seed))
		if err := os.WriteFile(file, []byte(reGenTable(r, typ, 25)), 0o644); err != nil {
			t.Fatal(err)
		}
		keys := reGenKeys(r, 80)
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			if reDiff(t, dir, typ, file, keys, nil) > 0 {
				hits++
			}
		})
	}
	// Random keys must hit random tables now and then, or equal empty
	// outputs prove nothing.
	if hits == 0 {
		t.Errorf("postmap found no key in any of the %d random %s tables", seeds, typ)
	}
}

// TestRegexpPrefilter checks the fast path (literal index) against plain
// one-by-one evaluation on random tables and keys.
func TestRegexpPrefilter(t *testing.T) {
	for _, typ := range []string{"regexp", "pcre"} {
		for seed := 1; seed <= 40; seed++ {
			r := rand.New(rand.NewSource(int64(seed)))
			src := reGenTable(r, typ, 60) + "/literal(x|y)here/ lit\nif /abc/\n/abcd/ in-if\nendif\n/^zzz/ z\n"
			rs := reBuild(typ, "gen", reLogicalLines(src, "gen", &Options{Warn: func(Warning) {}}), &Options{Warn: func(Warning) {}})
			keys := append(reGenKeys(r, 200), "literalxhere", "LITERALyHERE", "abcd", "ABCD", "zzz")
			for _, k := range keys {
				v1, ok1, err1 := rs.lookup(k, true)
				v2, ok2, err2 := rs.lookup(k, false)
				if v1 != v2 || ok1 != ok2 || (err1 == nil) != (err2 == nil) {
					t.Fatalf("%s seed %d key %q: fast (%q,%v,%v) slow (%q,%v,%v)", typ, seed, k, v1, ok1, err1, v2, ok2, err2)
				}
			}
		}
	}
}

// TestRegexpSemantics pins behaviour a user sees, table-driven, for both
// types (each case is also checked against postmap when it is installed).
func TestRegexpSemantics(t *testing.T) {
	cases := []struct {
		typ, table, key string
		want            string
		ok              bool
	}{
		{"regexp", "/^(x)(y)?$/ [$1][$2]", "x", "[x][]", true},
		{"regexp", "/^Up$/i case", "up", "", false},
		{"regexp", "/^Up$/i case", "Up", "case", true},
		{"regexp", "/^up$/ case", "UP", "case", true},
		{"regexp", ".c\\.d. dot", "cxd", "", false},
		{"regexp", ".c\\.d. dot", "c.d", "dot", true},
		{"regexp", "/a.b/ nl", "a\nb", "nl", true},
		{"regexp", "/a.b/m nl", "a\nb", "", false},
		{"regexp", "/^b/m nl", "a\nb", "nl", true},
		{"regexp", "/^b/ nl", "a\nb", "", false},
		{"regexp", "/^(a+)(a*)$/ [$1][$2]", "aaa", "[aaa][]", true},
		{"regexp", "/^é$/ e", "é", "e", true},
		{"regexp", "/^.$/ one", "é", "", false},
		{"regexp", "/^\\(a\\)\\1$/x bre", "aa", "bre", true},
		{"regexp", "/\\<foo\\>/ word", "a foo b", "word", true},
		{"regexp", "/\\<foo\\>/ word", "afoo b", "", false},
		{"pcre", "/^(a+?)/U [$1]", "aaa", "[aaa]", true},
		{"pcre", "/(?<=q)w/ lb", "qw", "lb", true},
		{"pcre", "/^(a)\\1$/ br", "aA", "br", true},
		{"pcre", "/^s.s$/ dotall", "s\ns", "dotall", true},
		{"pcre", "/^s.s$/s nodot", "s\ns", "", false},
		{"pcre", "/^e$/ end", "e\n", "end", true},
		{"pcre", "/^e$/E end", "e\n", "", false},
		{"pcre", "/b/A anch", "ab", "", false},
		{"pcre", "/a++b/ poss", "aab", "poss", true},
		{"pcre", "/^.$/ one", "é", "", false},
		{"pcre", "/^(?<n>x)(?P<m>y)$/ $1$2", "xy", "xy", true},
	}
	for _, c := range cases {
		t.Run(c.typ+" "+c.table+" "+strconv.Quote(c.key), func(t *testing.T) {
			m, _ := reOurs(t, c.typ, "{ {"+c.table+"} }", Options{})
			v, ok, err := m.Lookup(context.Background(), c.key)
			if err != nil || v != c.want || ok != c.ok {
				t.Fatalf("got (%q, %v, %v), want (%q, %v)", v, ok, err, c.want, c.ok)
			}
		})
	}
}

// TestRegexpTableBehaviour covers what is not a single rule: reload,
// NoSubstitution, empty results, non-UTF-8 keys, errors, kind and name.
func TestRegexpTableBehaviour(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "t")
	if err := os.WriteFile(file, []byte("/^a$/ one\n/^(b)$/ got-$1\n/^e$/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"regexp", "pcre"} {
		m, warns := reOurs(t, typ, file, Options{})
		if KindOf(m) != Pattern {
			t.Errorf("%s: kind %v, want Pattern", typ, KindOf(m))
		}
		if n, ok := m.(Named); !ok || n.Name() != typ+":"+file {
			t.Errorf("%s: Name() = %v", typ, m)
		}
		if _, ok := m.(Iterable); ok {
			t.Errorf("%s: table must not be Iterable (postmap -s refuses it)", typ)
		}
		if len(*warns) != 1 || !strings.HasSuffix((*warns)[0], "line 3: no replacement text: using empty string") {
			t.Errorf("%s: warnings %q", typ, *warns)
		}
		if _, _, err := m.Lookup(ctx, "e"); !errors.Is(err, ErrEmptyValue) {
			t.Errorf("%s: empty result: err = %v, want ErrEmptyValue", typ, err)
		}
		// Keys are bytes (cleanup's header_checks, smtputf8_enable = no).
		if v, ok, err := m.Lookup(ctx, "b\xff"); ok || err != nil || v != "" {
			t.Errorf("%s: non-UTF-8 key: %q ok=%v err=%v", typ, v, ok, err)
		}
		if len(*warns) != 1 {
			t.Errorf("%s: non-UTF-8 key drew warnings: %q", typ, *warns)
		}
		// NoSubstitution (alias_maps, virtual(8)) skips rules using $n.
		m2, warns2 := reOurs(t, typ, file, Options{NoSubstitution: true})
		if _, ok, _ := m2.Lookup(ctx, "b"); ok {
			t.Errorf("%s: NoSubstitution: rule with $1 was not skipped", typ)
		}
		if !strings.Contains(strings.Join(*warns2, "\n"), "line 2: regular expression substitution is not allowed: skipping this rule") {
			t.Errorf("%s: NoSubstitution warnings %q", typ, *warns2)
		}
		if _, err := NewRegistry().Open(ctx, typ+":"+filepath.Join(dir, "missing"), Options{}); err == nil {
			t.Errorf("%s: missing file opened without error", typ)
		}
		if _, err := NewRegistry().Open(ctx, typ+":{ /a/ b }", Options{}); err == nil || !strings.Contains(err.Error(), `no '{' at start of text in "/a/"`) {
			t.Errorf("%s: bad inline: %v", typ, err)
		}
	}
	// Reload: at most one stat a second, then the new rules.
	m, _ := reOurs(t, "regexp", file, Options{})
	if v, _, _ := m.Lookup(ctx, "a"); v != "one" {
		t.Fatalf("before reload: %q", v)
	}
	if err := os.WriteFile(file, []byte("/^a$/ two-longer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.(*reTable).watch.next.Store(0) // as if a second had passed
	if v, _, _ := m.Lookup(ctx, "a"); v != "two-longer" {
		t.Fatalf("after reload: %q", v)
	}
}

// TestRegexpTimeout: a runaway backtracking pattern is a temporary error.
func TestRegexpTimeout(t *testing.T) {
	old := reMatchTimeout
	reMatchTimeout = 100 * time.Millisecond
	defer func() { reMatchTimeout = old }()
	// The filter lets the key through (the superset ^(a+)+ matches it:
	// negative lookaheads are dropped),
	// and the backtracking engine then takes exponential time.
	m, _ := reOurs(t, "pcre", "{ {/^(a+)+(?!a)(?!!)/ x} }", Options{})
	_, _, err := m.Lookup(context.Background(), strings.Repeat("a", 40)+"!")
	if err == nil || !IsTemporary(err) {
		t.Fatalf("err = %v, want a temporary error", err)
	}
}

// reLineDiff shows the lines only one side printed.
func reLineDiff(theirs, ours string) string {
	a := strings.Split(theirs, "\n")
	b := strings.Split(ours, "\n")
	inB := map[string]bool{}
	for _, l := range b {
		inB[l] = true
	}
	inA := map[string]bool{}
	for _, l := range a {
		inA[l] = true
	}
	var out strings.Builder
	for _, l := range a {
		if !inB[l] {
			out.WriteString("postmap only: " + l + "\n")
		}
	}
	for _, l := range b {
		if !inA[l] {
			out.WriteString("postkit only: " + l + "\n")
		}
	}
	if out.Len() == 0 {
		return "(same lines, different order or count)"
	}
	return out.String()
}

// TestRegexpInlineOracle compares the Postfix 3.7 inline form with postmap.
func TestRegexpInlineOracle(t *testing.T) {
	oracle.Require(t, "postmap")
	dir := reOracleDir(t)
	for _, typ := range []string{"regexp", "pcre"} {
		for _, spec := range []string{
			"{ {/a(b)c/ got $1}, {/d/ dd} }",
			"{{/a/ x},{  /b/ y}}",
			"{ {/a(b)c/ got $3}, {/d/}, {if /a/}, {/b/ bb}, {endif}, {if /q/} }",
			"{ {}, {/b/ y z } }",
			"{ {/b/ y {z} } }",
			"{}",
		} {
			t.Run(typ+spec, func(t *testing.T) {
				reDiff(t, dir, typ, spec, []string{"abc", "b", "d", "x"}, nil)
			})
		}
	}
}

// reFuzzTable is the body of FuzzRegexpTable and FuzzPCRETable: any table
// text loads without panicking, and the prefiltered lookup agrees with
// plain rule-by-rule evaluation.
func reFuzzTable(t *testing.T, typ, table, key string) {
	// A catastrophic pattern must not stall the fuzzer for the full
	// production timeout.
	old := reMatchTimeout
	reMatchTimeout = 100 * time.Millisecond
	defer func() { reMatchTimeout = old }()
	quiet := &Options{Warn: func(Warning) {}}
	rs := reBuild(typ, "fuzz", reLogicalLines(table, "fuzz", quiet), quiet)
	// Inline parsing must not panic either.
	if elems, err := reSplitInline("{" + table + "}"); err == nil {
		reBuild(typ, "{fuzz}", elems, quiet)
	}
	if len(key) >= 200 {
		return
	}
	for _, k := range []string{key, strings.ToUpper(key), "x" + key + "\n"} {
		v1, ok1, err1 := rs.lookup(k, true)
		v2, ok2, err2 := rs.lookup(k, false)
		if err1 != nil || err2 != nil {
			continue // a regexp2 timeout may hit either path
		}
		if v1 != v2 || ok1 != ok2 {
			t.Fatalf("key %q: fast (%q,%v) slow (%q,%v)\n%s", k, v1, ok1, v2, ok2, table)
		}
	}
}

func FuzzRegexpTable(f *testing.F) {
	for _, s := range []struct{ table, key string }{
		{"/^(a)(b)?$/ [$1][$2]\n", "a"},
		{"if /a/\n/b/ ab\nendif\n/./ any\n", "ab"},
		{"/a\\/b/ x\n.c\\.d. y\n/[]a]/ z\n", "c.d"},
		{"/\\(x\\)\\1/x bre\n/a{,2}b/ iv\n", "xx"},
		{"/[[:alpha:]-z]/ bad\n/a{3,1}/ bad\n", "a"},
		{"/\\<w\\>/ word\n", "a w b"},
		{"/\\d\\t/ esc\n/\\D/i up\n/(money|cash)/ alt\n", "Cash d\t"},
		{"/^[^a-z]*$/ caps\n/[A-Z]{15,}/ run\n/^Subject:.*(a|b)/ ds\n", "SUBJECT: ABCDEFGHIJKLMNOPQ"},
		{"/(.)\\1{3,}/ rep\n/(ha){3,}/ ha\n", "caf\xe9 hahaha aaaa"},
		{"/^x/!/y/ legacy\n!/z/ neg\n", "xz"},
	} {
		f.Add(s.table, s.key)
	}
	f.Fuzz(func(t *testing.T, table, key string) {
		reFuzzTable(t, "regexp", table, key)
		// Every pattern glibc accepts must compile for the engine we pick.
		for _, ln := range strings.Split(table, "\n") {
			for _, ere := range []bool{true, false} {
				tr, e := reTranslatePOSIX(ln, ere, true, false)
				if e != "" || tr.backtrack {
					continue
				}
				if _, err := regexp.Compile(tr.goExpr); err != nil &&
					!strings.Contains(err.Error(), "repetition") && !strings.Contains(err.Error(), "too large") && !strings.Contains(err.Error(), "repeat count") {
					t.Fatalf("pattern %q (ere=%v) translated to %q: %v", ln, ere, tr.goExpr, err)
				}
			}
		}
	})
}

// reBenchTable makes a table of n rules in the style of real access and
// header_checks tables: literal-heavy, some classes and alternations.
func reBenchTable(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "/^user%d@example%d\\.com$/ OK %d\n", i, i, i)
		case 1:
			fmt.Fprintf(&b, "/(spam|junk)word%d/ REJECT %d\n", i, i)
		case 2:
			fmt.Fprintf(&b, "/^[a-z]+\\.host%d\\.example\\.net$/ DUNNO\n", i)
		default:
			fmt.Fprintf(&b, "/^(.+)@domain%d\\.org$/ relay:$1\n", i)
		}
	}
	return b.String()
}

func reBenchLookup(b *testing.B, typ string) {
	for _, n := range []int{10, 100, 1000} {
		file := filepath.Join(b.TempDir(), "t")
		if err := os.WriteFile(file, []byte(reBenchTable(n)), 0o644); err != nil {
			b.Fatal(err)
		}
		m, _ := reOurs(b, typ, file, Options{})
		rs := m.(*reTable).rules.Load()
		last := n - 1
		for last%4 != 3 {
			last--
		}
		late := fmt.Sprintf("someone@domain%d.org", last)
		for _, c := range []struct{ name, key string }{
			{"miss", "nobody@nowhere.example.com"},
			{"latehit", late},
		} {
			if _, ok, _ := m.Lookup(context.Background(), c.key); ok != (c.name == "latehit") {
				b.Fatalf("%s: unexpected ok=%v", c.name, ok)
			}
			b.Run(fmt.Sprintf("rules=%d/%s", n, c.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					m.Lookup(context.Background(), c.key)
				}
			})
			b.Run(fmt.Sprintf("rules=%d/%s/oneByOne", n, c.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					rs.lookup(c.key, false)
				}
			})
		}
		// The baseline: one postmap -q - process answering 1000 keys
		// (misses and late hits), against the same 1000 lookups here.
		keys := make([]string, 1000)
		for i := range keys {
			keys[i] = "nobody@nowhere.example.com"
			if i%2 == 1 {
				keys[i] = late
			}
		}
		b.Run(fmt.Sprintf("rules=%d/keys1000/postkit", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				for _, k := range keys {
					m.Lookup(context.Background(), k)
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/keys1000/postmap", n), func(b *testing.B) {
			postmap := oracle.Require(b, "postmap")
			dir := reOracleDir(b)
			in := []byte(strings.Join(keys, "\n") + "\n")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := oracle.Exec(postmap, in, "-c", dir, "-q", "-", typ+":"+file); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRegexpLookup(b *testing.B) { reBenchLookup(b, "regexp") }

func reBenchLoad(b *testing.B, typ string) {
	file := filepath.Join(b.TempDir(), "t")
	if err := os.WriteFile(file, []byte(reBenchTable(1000)), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := NewRegistry().Open(context.Background(), typ+":"+file, Options{Warn: func(Warning) {}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRegexpLoad(b *testing.B) { reBenchLoad(b, "regexp") }

// TestRegexpConcurrent runs lookups from several goroutines while the file
// is rewritten and reloaded (for -race).
func TestRegexpConcurrent(t *testing.T) {
	file := filepath.Join(t.TempDir(), "t")
	if err := os.WriteFile(file, []byte(reBenchTable(50)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"regexp", "pcre"} {
		m, _ := reOurs(t, typ, file, Options{})
		done := make(chan bool)
		for g := 0; g < 4; g++ {
			go func() {
				defer func() { done <- true }()
				for i := 0; i < 200; i++ {
					v, ok, err := m.Lookup(context.Background(), "someone@domain3.org")
					if err != nil || !ok || v != "relay:someone" {
						t.Errorf("lookup: %q %v %v", v, ok, err)
						return
					}
					if i%50 == 0 {
						m.(*reTable).watch.next.Store(0)
					}
				}
			}()
		}
		for g := 0; g < 4; g++ {
			<-done
		}
	}
}

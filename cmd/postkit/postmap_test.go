package main

// Differential tests: every case runs "postkit postmap ..." in process and
// Debian's postmap(1) (internal/oracle) with the same arguments on the same
// files, and compares standard output and exit status byte for byte and the
// warning and error lines on standard error.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// pmKit runs "postkit NAME ARGS..." in process.
func pmKit(stdin []byte, name string, args ...string) oracle.Result {
	var out, errb bytes.Buffer
	code := run(append([]string{"postkit", name}, args...), bytes.NewReader(stdin), &out, &errb)
	return oracle.Result{Stdout: out.Bytes(), Stderr: errb.Bytes(), Code: code}
}

// pmBoth runs the same command through postkit and through Postfix.
func pmBoth(t *testing.T, stdin []byte, name string, args ...string) (kit, real oracle.Result) {
	t.Helper()
	kit = pmKit(stdin, name, args...)
	real = oracle.Run(t, stdin, name, args...)
	return kit, real
}

// pmSame fails the test when postkit and Postfix differ.
func pmSame(t *testing.T, what string, kit, real oracle.Result) {
	t.Helper()
	if !bytes.Equal(kit.Stdout, real.Stdout) {
		t.Errorf("%s: stdout differs\npostkit:\n%s\npostfix:\n%s", what, kit.Stdout, real.Stdout)
	}
	if kit.Code != real.Code {
		t.Errorf("%s: exit status: postkit %d, postfix %d (postkit stderr: %s)", what, kit.Code, real.Code, kit.Stderr)
	}
	if !bytes.Equal(kit.Stderr, real.Stderr) {
		t.Errorf("%s: stderr differs\npostkit:\n%s\npostfix:\n%s", what, kit.Stderr, real.Stderr)
	}
}

// pmCompare runs both and compares.
func pmCompare(t *testing.T, stdin []byte, name string, args ...string) (kit, real oracle.Result) {
	t.Helper()
	kit, real = pmBoth(t, stdin, name, args...)
	pmSame(t, name+" "+strings.Join(args, " "), kit, real)
	return kit, real
}

// pmTestdata reads a file from testdata.
func pmTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pmWrite writes data to dir/name and returns the path.
func pmWrite(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pmWorkDir is a scratch directory Postfix (which drops privileges to the
// source file's owner) can use.
func pmWorkDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// pmCompareHits is pmCompare for a query that must find something: when
// Postfix prints no value and no fatal error (a table that was not built,
// keys that all miss), equal empty outputs would prove nothing.
func pmCompareHits(t *testing.T, stdin []byte, name string, args ...string) (kit, real oracle.Result) {
	t.Helper()
	kit, real = pmCompare(t, stdin, name, args...)
	if len(real.Stdout) == 0 && !bytes.Contains(real.Stderr, []byte("fatal:")) {
		t.Errorf("%s %s: Postfix found no key (exit %d, stderr %q): the comparison proves nothing", name, strings.Join(args, " "), real.Code, real.Stderr)
	}
	return kit, real
}

// pmQueryAll compares "-q -" over keys, then "-q KEY" for each key. The
// keys must find something in the table, or Postfix must fail.
func pmQueryAll(t *testing.T, cmd, conf, spec string, keys []byte) {
	t.Helper()
	pmCompareHits(t, keys, cmd, "-c", conf, "-q", "-", spec)
	var args [][]string
	for _, k := range strings.Split(strings.TrimSuffix(string(keys), "\n"), "\n") {
		if k == "" || k == "-" {
			continue
		}
		args = append(args, []string{"-c", conf, "-q", k, spec})
	}
	pmCompareMany(t, nil, cmd, args)
}

// pmCompareMany compares several commands, running them side by side:
// Postfix sleeps a second before it exits on a fatal error, so one at a
// time they would take minutes. The commands must not change any file.
func pmCompareMany(t *testing.T, stdin []byte, cmd string, argss [][]string) {
	t.Helper()
	// Skip or fail here, on the test's goroutine: t.Skip and t.Fatal
	// must not be called from the goroutines below.
	oracle.Require(t, cmd)
	type pair struct{ kit, real oracle.Result }
	res := make([]pair, len(argss))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, args := range argss {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res[i].kit = pmKit(stdin, cmd, args...)
			res[i].real = pmOracle(t, stdin, cmd, args...)
		}()
	}
	wg.Wait()
	for i, args := range argss {
		pmSame(t, cmd+" "+strings.Join(args, " "), res[i].kit, res[i].real)
	}
}

// pmOracle is oracle.Run for use off the test's goroutine: it reports a
// command that cannot start with Errorf, not Fatalf.
func pmOracle(t *testing.T, stdin []byte, name string, args ...string) oracle.Result {
	res, err := oracle.Exec(oracle.Require(t, name), stdin, args...)
	if err != nil {
		t.Errorf("oracle: run %s %v: %v", name, args, err)
	}
	return res
}

// TestPostmapIndexedTypes builds the virtual corpus as each indexed type with
// both programs (comparing the warnings), then queries it with both. cdb files
// built by postkit are read by postmap, and the other way round.
func TestPostmapIndexedTypes(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	src := pmTestdata(t, "virtual")
	keys := pmTestdata(t, "virtual.keys")
	for _, typ := range []string{"hash", "btree", "lmdb", "cdb"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			dir := pmWorkDir(t)
			file := pmWrite(t, dir, "virtual", src)
			spec := typ + ":" + file
			// postkit first: for cdb its file is then replaced by
			// Postfix's, which the second half reads.
			kit := pmKit(nil, "postmap", "-c", conf, spec)
			var kitCDB []byte
			if typ == "cdb" {
				kitCDB, _ = os.ReadFile(file + ".cdb")
				pmQueryAll(t, "postmap", conf, spec, keys) // postkit's file, both readers
			}
			real := oracle.Run(t, nil, "postmap", "-c", conf, spec)
			pmSame(t, "build "+spec, kit, real)
			pmQueryAll(t, "postmap", conf, spec, keys)
			if typ == "cdb" && len(kitCDB) == 0 {
				t.Errorf("postkit postmap %s wrote no %s.cdb", spec, file)
			}
		})
	}
}

// TestPostmapTextTypes queries the tables Postfix reads from text: texthash,
// regexp, pcre, cidr, inline and static.
func TestPostmapTextTypes(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	virtual := pmWrite(t, dir, "virtual", pmTestdata(t, "virtual"))
	// Postfix reads a texthash file again, repeating its warnings, while
	// the file looks freshly written.
	oracle.Backdate(t, virtual)
	re := pmWrite(t, dir, "access.regexp", pmTestdata(t, "access.regexp"))
	pcre := pmWrite(t, dir, "access.pcre", pmTestdata(t, "access.pcre"))
	cidr := pmWrite(t, dir, "clients.cidr", pmTestdata(t, "clients.cidr"))
	cases := []struct {
		spec string
		keys []byte
	}{
		{"texthash:" + virtual, pmTestdata(t, "virtual.keys")},
		{"regexp:" + re, pmTestdata(t, "regexp.keys")},
		{"pcre:" + pcre, pmTestdata(t, "regexp.keys")},
		{"cidr:" + cidr, pmTestdata(t, "cidr.keys")},
		{"inline:{ Foo=bar, { bar = baz qux }, {key=with spaces}, dup=1, dup=2 }", []byte("foo\nFOO\nkey\nbar\ndup\nnone\n")},
		// Postfix rejects a name with a space.
		{"inline:{ {key with = spaces} }", []byte("key with\n")},
		{`inline:{ {"a b" = c}, {a\ b=d}, {x = y = z} }`, []byte("\"a b\"\na\\ b\nx\n")},
		{"inline:{ =empty-key, k=v }", []byte("k\n\nx\n")},
		{"static:x", []byte("a\n\nb\n")},
		{"static:{a value with spaces}", []byte("anything\nELSE\n")},
		{"static:plain", []byte("x\n")},
		{"regexp:{{/^a/ A},{/^b/ B $0},{/^(c)(d)?/ [$1$2]}}", []byte("abc\nbcd\ncde\ncx\nzzz\n")},
		{"cidr:{{10.0.0.0/8 ten},{!10.0.0.0/8 other}}", []byte("10.1.1.1\n11.1.1.1\nhost\n")},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			t.Parallel()
			pmQueryAll(t, "postmap", conf, c.spec, c.keys)
		})
	}
}

// TestPostmapSeveralTables: -q asks each table in turn and opens them
// lazily, so a missing later table is not an error once a key is found.
func TestPostmapSeveralTables(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	a := pmWrite(t, dir, "a", []byte("a 1\nshared from-a\n"))
	b := pmWrite(t, dir, "b", []byte("b 2\nshared from-b\n"))
	for _, f := range []string{a, b} {
		oracle.Run(t, nil, "postmap", "-c", conf, "hash:"+f)
	}
	missing := filepath.Join(dir, "missing")
	for _, args := range [][]string{
		{"-q", "shared", "hash:" + a, "hash:" + b},
		{"-q", "b", "hash:" + a, "hash:" + b},
		{"-q", "a", "hash:" + a, "hash:" + missing},
		{"-q", "b", "hash:" + a, "hash:" + missing},
		{"-q", "-", "hash:" + a, "hash:" + b},
		{"-q", "-", "hash:" + a, "regexp:" + missing},
		{"-s", "hash:" + a, "hash:" + missing},
		{"-q", "a", a}, // default_database_type
	} {
		stdin := []byte("a\nb\nshared\nnone\n")
		if args[1] == "-" && strings.HasPrefix(args[3], "regexp:") {
			stdin = []byte("a\n")
		}
		pmCompare(t, stdin, "postmap", append([]string{"-c", conf}, args...)...)
	}
}

// pmRandomKey makes a random address-like key with mixed case.
func pmRandomKey(r *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+"
	n := 1 + r.Intn(20)
	b := make([]byte, 0, n+12)
	for i := 0; i < n; i++ {
		b = append(b, chars[r.Intn(len(chars))])
	}
	b = append(b, '@')
	b = append(b, "example.com"[r.Intn(5):]...)
	return string(b)
}

// pmRandomTable writes n random entries (some duplicate, some with upper
// case) and returns the source and a key list with hits, case variants and
// misses.
func pmRandomTable(seed int64, n int) (src, keys []byte) {
	r := rand.New(rand.NewSource(seed))
	var s, k bytes.Buffer
	var prev []string
	for i := 0; i < n; i++ {
		key := pmRandomKey(r)
		if len(prev) > 0 && r.Intn(20) == 0 {
			key = prev[r.Intn(len(prev))] // a duplicate
		}
		prev = append(prev, key)
		fmt.Fprintf(&s, "%s\tvalue-%d %s\n", key, i, strings.Repeat("x", r.Intn(5)))
	}
	for _, key := range prev {
		switch r.Intn(3) {
		case 0:
			key = strings.ToUpper(key)
		case 1:
			key = strings.ToLower(key)
		}
		fmt.Fprintln(&k, key)
		if r.Intn(4) == 0 {
			fmt.Fprintln(&k, pmRandomKey(r))
		}
	}
	return s.Bytes(), k.Bytes()
}

// TestPostmapRandomTables compares "-q -" over generated tables and keys.
func TestPostmapRandomTables(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	for seed := int64(1); seed <= 3; seed++ {
		src, keys := pmRandomTable(seed, 2000)
		for _, typ := range []string{"hash", "cdb", "lmdb"} {
			t.Run(fmt.Sprintf("%s-seed%d", typ, seed), func(t *testing.T) {
				t.Parallel()
				dir := pmWorkDir(t)
				file := pmWrite(t, dir, "random", src)
				spec := typ + ":" + file
				kit := pmKit(nil, "postmap", "-c", conf, spec)
				if typ == "cdb" {
					pmCompareHits(t, keys, "postmap", "-c", conf, "-q", "-", spec)
				}
				real := oracle.Run(t, nil, "postmap", "-c", conf, spec)
				pmSame(t, "build "+spec, kit, real)
				pmCompareHits(t, keys, "postmap", "-c", conf, "-q", "-", spec)
			})
		}
	}
}

// pmRandomCIDR writes n random cidr rules and n keys.
func pmRandomCIDR(seed int64, n int) (src, keys []byte) {
	r := rand.New(rand.NewSource(seed))
	var s, k bytes.Buffer
	for i := 0; i < n; i++ {
		bits := 8 + r.Intn(25)
		ip := r.Uint32() &^ (1<<(32-bits) - 1)
		if bits == 32 {
			ip = r.Uint32()
		}
		neg := ""
		if r.Intn(50) == 0 {
			neg = "!"
		}
		fmt.Fprintf(&s, "%s%d.%d.%d.%d/%d\trule-%d\n", neg, ip>>24, ip>>16&255, ip>>8&255, ip&255, bits, i)
		if r.Intn(10) == 0 {
			fmt.Fprintf(&s, "2001:db8:%x::/48\tv6-%d\n", r.Intn(65536), i)
		}
		x := r.Uint32()
		fmt.Fprintf(&k, "%d.%d.%d.%d\n", x>>24, x>>16&255, x>>8&255, x&255)
		if r.Intn(5) == 0 {
			fmt.Fprintf(&k, "2001:db8:%x::%x\n", r.Intn(65536), r.Intn(65536))
		}
	}
	return s.Bytes(), k.Bytes()
}

// pmRandomRegexp writes n random regexp rules and n keys.
func pmRandomRegexp(seed int64, n int) (src, keys []byte) {
	r := rand.New(rand.NewSource(seed))
	word := func() string {
		const chars = "abcdefghijklmnopqrstuvwxyz"
		b := make([]byte, 2+r.Intn(3))
		for i := range b {
			b[i] = chars[r.Intn(len(chars))]
		}
		return string(b)
	}
	var s, k bytes.Buffer
	for i := 0; i < n; i++ {
		switch r.Intn(4) {
		case 0:
			fmt.Fprintf(&s, "/^%s/\tprefix-%d\n", word(), i)
		case 1:
			fmt.Fprintf(&s, "/%s$/\tsuffix-%d\n", word(), i)
		case 2:
			fmt.Fprintf(&s, "/^(%s)[.-](.*)$/\tgroups-%d $2 $1\n", word(), i)
		default:
			fmt.Fprintf(&s, "/%s@%s/i\tcase-%d\n", word(), strings.ToUpper(word()), i)
		}
		key := word() + word()
		if r.Intn(3) == 0 {
			key = strings.ToUpper(key)
		}
		if r.Intn(3) == 0 {
			key += "." + word()
		}
		fmt.Fprintln(&k, key)
	}
	return s.Bytes(), k.Bytes()
}

// TestPostmapRandomPatterns compares "-q -" over generated cidr, regexp and
// pcre tables.
func TestPostmapRandomPatterns(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	for seed := int64(1); seed <= 2; seed++ {
		src, keys := pmRandomCIDR(seed, 1000)
		f := pmWrite(t, dir, fmt.Sprintf("cidr%d", seed), src)
		pmCompareHits(t, keys, "postmap", "-c", conf, "-q", "-", "cidr:"+f)
		src, keys = pmRandomRegexp(seed, 500)
		for _, typ := range []string{"regexp", "pcre"} {
			f := pmWrite(t, dir, fmt.Sprintf("%s%d", typ, seed), src)
			pmCompareHits(t, keys, "postmap", "-c", conf, "-q", "-", typ+":"+f)
		}
	}
}

// pmSortedDump compares "-s" output as sorted lines: Postfix lists a table
// in its database's order, which postkit does not reproduce.
func pmSortedDump(t *testing.T, cmd string, args ...string) {
	t.Helper()
	kit, real := pmBoth(t, nil, cmd, args...)
	lines := func(b []byte) []string {
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			// postalias(1) adds sendmail's "@: @" and NIS's YP_* entries,
			// which postkit does not store.
			if l == "" || strings.HasPrefix(l, "@:\t") || strings.HasPrefix(l, "YP_") {
				continue
			}
			out = append(out, l)
		}
		sort.Strings(out)
		return out
	}
	k, r := lines(kit.Stdout), lines(real.Stdout)
	if strings.Join(k, "\n") != strings.Join(r, "\n") {
		t.Errorf("%s %v: sorted dump differs\npostkit:\n%s\npostfix:\n%s", cmd, args, strings.Join(k, "\n"), strings.Join(r, "\n"))
	}
	kit.Stdout, real.Stdout = nil, nil
	pmSame(t, cmd+" "+strings.Join(args, " "), kit, real)
}

// TestPostmapDump compares "postmap -s".
func TestPostmapDump(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "virtual", pmTestdata(t, "virtual"))
	for _, typ := range []string{"hash", "btree", "lmdb", "cdb", "texthash"} {
		// hash and btree both write FILE.db: one source each.
		f := pmWrite(t, dir, "virtual-"+typ, pmTestdata(t, "virtual"))
		oracle.Backdate(t, f)
		if typ != "texthash" {
			oracle.Run(t, nil, "postmap", "-c", conf, typ+":"+f)
		}
		if typ == "cdb" {
			file = f
			continue
		}
		pmSortedDump(t, "postmap", "-c", conf, "-s", typ+":"+f)
	}
	re := pmWrite(t, dir, "re", pmTestdata(t, "access.regexp"))
	// Not listable: an error, the same one.
	for _, spec := range []string{"cdb:" + file, "regexp:" + re, "static:x"} {
		pmCompare(t, nil, "postmap", "-c", conf, "-s", spec)
	}
	pmSortedDump(t, "postmap", "-c", conf, "-s", "inline:{a=1, B=2}")
	pmSortedDump(t, "postmap", "-c", conf, "-s", "inline:{a=1, =2}")
}

// TestPostmapDelete compares -d KEY and -d -: postkit removes the key from
// the source, Postfix from the .db; afterwards every key must look the same.
func TestPostmapDelete(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	keys := pmTestdata(t, "virtual.keys")
	cases := []struct {
		args  []string // before the spec
		stdin string
	}{
		{args: []string{"-d", "FOO@example.com"}},
		{args: []string{"-d", "multi@example.com"}},
		{args: []string{"-d", "dup2@example.com"}},
		{args: []string{"-d", "not-there"}},
		{args: []string{"-f", "-d", "UPPER@EXAMPLE.ORG"}},
		{args: []string{"-d", "-"}, stdin: "bar@example.com\nnone\n\"quoted key\"@example.com\n"},
		{args: []string{"-d", "-"}, stdin: "none\nother\n"},
	}
	for _, typ := range []string{"hash", "lmdb"} {
		for i, c := range cases {
			t.Run(fmt.Sprintf("%s-%d", typ, i), func(t *testing.T) {
				t.Parallel()
				dir := pmWorkDir(t)
				file := pmWrite(t, dir, "virtual", pmTestdata(t, "virtual"))
				spec := typ + ":" + file
				oracle.Run(t, nil, "postmap", "-c", conf, spec)
				args := append(append([]string{"-c", conf}, c.args...), spec)
				pmCompare(t, []byte(c.stdin), "postmap", args...)
				pmCompareHits(t, keys, "postmap", "-c", conf, "-q", "-", spec)
			})
		}
	}
	// Tables that cannot be changed.
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "virtual", pmTestdata(t, "virtual"))
	oracle.Run(t, nil, "postmap", "-c", conf, "cdb:"+file)
	re := pmWrite(t, dir, "re", pmTestdata(t, "access.regexp"))
	var one, many [][]string
	for _, spec := range []string{"cdb:" + file, "regexp:" + re, "texthash:" + file, "static:x", "fail:x", "inline:{a=1}", "bogus:" + file, "hash:" + filepath.Join(dir, "missing")} {
		one = append(one, []string{"-c", conf, "-d", "a", spec})
		many = append(many, []string{"-c", conf, "-d", "-", spec})
	}
	pmCompareMany(t, nil, "postmap", one)
	pmCompareMany(t, []byte("a\n"), "postmap", many)
}

// TestPostmapIncremental compares -i (and -i with -r, -w): entries from
// standard input are added; then every key must look the same.
func TestPostmapIncremental(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	keys := append(pmTestdata(t, "virtual.keys"), "new@example.com\nnew2@example.com\nnew3\n"...)
	stdin := []byte("new@example.com   new value\nfoo@example.com   replaced\nbad-line\nNew2@Example.com  v2\n  continued\nnew3 a\nnew3 b\n")
	for _, typ := range []string{"hash", "btree"} {
		for _, flags := range [][]string{{"-i"}, {"-ir"}, {"-i", "-w"}} {
			t.Run(typ+strings.Join(flags, ""), func(t *testing.T) {
				t.Parallel()
				dir := pmWorkDir(t)
				file := pmWrite(t, dir, "virtual", pmTestdata(t, "virtual"))
				spec := typ + ":" + file
				oracle.Run(t, nil, "postmap", "-c", conf, spec)
				args := append(append([]string{"-c", conf}, flags...), spec)
				pmCompare(t, stdin, "postmap", args...)
				pmCompareHits(t, keys, "postmap", "-c", conf, "-q", "-", spec)
			})
		}
	}
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "v", []byte("a 1\n"))
	oracle.Run(t, nil, "postmap", "-c", conf, "cdb:"+file)
	var all [][]string
	for _, spec := range []string{"cdb:" + file, "regexp:" + file, "texthash:" + file, "inline:{a=1}", "bogus:" + file} {
		all = append(all, []string{"-c", conf, "-i", spec})
	}
	pmCompareMany(t, []byte("b 2\n"), "postmap", all)
}

// TestPostmapFold compares -f at build and query time.
func TestPostmapFold(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "t", []byte("lower 1\nMixed 2\n"))
	spec := "hash:" + file
	pmCompare(t, nil, "postmap", "-c", conf, spec)
	for _, k := range []string{"lower", "LOWER", "mixed", "Mixed"} {
		pmCompare(t, nil, "postmap", "-c", conf, "-f", "-q", k, spec)
		pmCompare(t, nil, "postmap", "-c", conf, "-q", k, spec)
	}
	pmCompare(t, []byte("lower\nLOWER\nmixed\n"), "postmap", "-c", conf, "-fq", "-", spec)
}

// TestPostmapErrors compares usage errors, bad types, missing files and
// failing tables.
func TestPostmapErrors(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "t", []byte("a 1\n"))
	oracle.Run(t, nil, "postmap", "-c", conf, "hash:"+file)
	re := pmWrite(t, dir, "re", []byte("/^a/ A\n"))
	missing := filepath.Join(dir, "missing")
	var all [][]string
	for _, args := range [][]string{
		{},
		{"-Z", file},
		{"-q"},
		{"-c"},
		{"-q", "a"},
		{"-q", "a", "-d", "b", file},
		{"-q", "a", "-s", file},
		{"-s", "-q", "a", file},
		{"-s", "-d", "a", file},
		{"-q", "a", "-q", "b", file},
		{"-b", "-q", "a", file},
		{"-h", file},
		{"-m", file},
		{"hash:" + file, "-q", "a"},
		{"-q", "a", "--", file},
		{"-qa", file},
		{"-q", "a", "bogus:" + file},
		{"-q", "a", "static:"},
		{"-q", "a", "hash:" + missing},
		{"-q", "a", "btree:" + missing},
		{"-q", "a", "lmdb:" + missing},
		{"-q", "a", "cdb:" + missing},
		{"-q", "a", "texthash:" + missing},
		{"-q", "a", "regexp:" + missing},
		{"-q", "a", "pcre:" + missing},
		{"-q", "a", "cidr:" + missing},
		{"-q", "a", "fail:x"},
		{"-q", "a", "static:x", "fail:x"},
		{"hash:" + missing},
		{"cdb:" + missing},
		{"bogus:" + file},
		{"regexp:" + re},
		{"pcre:" + re},
		{"cidr:" + re},
		{"texthash:" + file},
		{missing},
	} {
		all = append(all, append([]string{"-c", conf}, args...))
	}
	pmCompareMany(t, []byte("a\n"), "postmap", all)
	pmCompare(t, nil, "postmap", "-c", filepath.Join(dir, "noconf"), "-q", "a", file)
	pmCompare(t, []byte("a\nb\n"), "postmap", "-c", conf, "-q", "-", "fail:x")
	// An empty value is reported and printed.
	empty := pmWrite(t, dir, "empty", []byte("/^a/\n/^b/ B\n"))
	pmCompare(t, nil, "postmap", "-c", conf, "-q", "abc", "regexp:"+empty)
	pmCompare(t, []byte("abc\nbcd\n"), "postmap", "-c", conf, "-q", "-", "regexp:"+empty)
}

// TestPostmapCDBModes: -N stores NULs; -p sets mode 0644; otherwise the
// .cdb file takes the source's read bits. Files are then read by Postfix.
func TestPostmapCDBModes(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "t", []byte("a 1\nb 2\n"))
	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flags []string
		mode  os.FileMode
	}{{nil, 0o640}, {[]string{"-N"}, 0o640}, {[]string{"-p"}, 0o644}} {
		kit := pmKit(nil, "postmap", append(append([]string{"-c", conf}, c.flags...), "cdb:"+file)...)
		if kit.Code != 0 || len(kit.Stderr) > 0 {
			t.Fatalf("postkit postmap %v cdb: exit %d, %s", c.flags, kit.Code, kit.Stderr)
		}
		st, err := os.Stat(file + ".cdb")
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != c.mode {
			t.Errorf("postmap %v: .cdb mode %v, want %v", c.flags, st.Mode().Perm(), c.mode)
		}
		real := oracle.Run(t, []byte("a\nb\nc\n"), "postmap", "-c", conf, "-q", "-", "cdb:"+file)
		if string(real.Stdout) != "a\t1\nb\t2\n" {
			t.Errorf("postfix reading postkit's cdb built with %v: %q", c.flags, real.Stdout)
		}
	}
}

// TestPostmapDispatch: a link named postmap runs postmap.
func TestPostmapDispatch(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	var out, errb bytes.Buffer
	code := run([]string{"/usr/sbin/postmap", "-c", conf, "-q", "x", "static:y"}, strings.NewReader(""), &out, &errb)
	if code != 0 || out.String() != "y\n" {
		t.Errorf("argv[0]=postmap: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// TestPostmapDuplicateFlags: Postfix applies -r (last of a repeated key
// wins) and -w (first wins), silently, when it builds an indexed table and
// when it reads a texthash table. postkit keeps no index, so a query with
// the flag answers as the table built with it.
func TestPostmapDuplicateFlags(t *testing.T) {
	t.Parallel()
	conf := oracle.ConfigDir(t, "")
	src := []byte("a 1\nB 2\nbad\nA 3\nb 4\nc 5\n")
	keys := []byte("a\nb\nc\nd\n")
	for _, flag := range []string{"-r", "-w"} {
		for _, typ := range []string{"hash", "btree", "lmdb", "cdb", "texthash"} {
			t.Run(typ+flag, func(t *testing.T) {
				t.Parallel()
				dir := pmWorkDir(t)
				file := pmWrite(t, dir, "t", src)
				oracle.Backdate(t, file)
				spec := typ + ":" + file
				if typ != "texthash" {
					// Build (postkit's cdb first, then Postfix's).
					kit := pmKit(nil, "postmap", "-c", conf, flag, spec)
					if typ == "cdb" {
						pmCompareHits(t, keys, "postmap", "-c", conf, "-q", "-", spec)
					}
					real := oracle.Run(t, nil, "postmap", "-c", conf, flag, spec)
					pmSame(t, "build "+flag+" "+spec, kit, real)
				}
				pmCompareHits(t, keys, "postmap", "-c", conf, flag, "-q", "-", spec)
				if typ != "cdb" {
					pmSortedDump(t, "postmap", "-c", conf, flag, "-s", spec)
				}
			})
		}
	}
}

// TestPostmapMainCF: main.cf is read as Postfix reads it: an entry given
// twice draws a warning, a line without '=' is fatal, $names expand.
func TestPostmapMainCF(t *testing.T) {
	t.Parallel()
	dir := pmWorkDir(t)
	file := pmWrite(t, dir, "t", []byte("a 1\n"))
	oracle.Backdate(t, file)
	for _, extra := range []string{
		"default_database_type = hash\ndefault_database_type = $foo\nfoo = tex${bar}hash\nbar = t\n",
		"bogus line\n",
		"default_database_type = cdb\n  # comment\n",
	} {
		conf := oracle.ConfigDir(t, extra)
		pmCompare(t, nil, "postmap", "-c", conf, "-q", "a", file)
		pmCompare(t, nil, "postmap", "-c", conf+"/", "-q", "a", "static:x")
	}
	pmCompare(t, nil, "postmap", "-c", filepath.Join(dir, "none")+"/", "-q", "a", "static:x")
}

// BenchmarkPostmapQueryStdin measures the "postmap -q -" loop in process
// over a 10,000-entry hash table (read from its source) and 10,000 keys, half
// of them present. The table is opened once per iteration, as a process
// would.
func BenchmarkPostmapQueryStdin(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	src, keys := pmRandomTable(42, 10000)
	file := filepath.Join(dir, "table")
	if err := os.WriteFile(file, src, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(keys)))
	b.ReportAllocs()
	for b.Loop() {
		code := postmapMain([]string{"-c", dir, "-q", "-", "hash:" + file}, bytes.NewReader(keys), io.Discard, io.Discard)
		if code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}

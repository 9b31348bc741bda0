package maps

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// srcWarnings collects warnings as the postmap/postalias command prints them.
type srcWarnings struct {
	prog  string
	lines []string
}

func (w *srcWarnings) opts(aliases bool) Options {
	return Options{Aliases: aliases, Warn: func(x Warning) {
		w.lines = append(w.lines, w.prog+": warning: "+x.String())
	}}
}

// srcSortedLines splits output into lines and sorts them.
func srcSortedLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	l := strings.Split(s, "\n")
	slices.Sort(l)
	return l
}

// srcLines splits output into lines, in order.
func srcLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// srcQueryKeys derives lookup keys from a source file: each line's first
// field as written, upper- and lower-cased, plus keys that are not there.
func srcQueryKeys(src []byte) []string {
	var keys []string
	for _, line := range strings.Split(string(src), "\n") {
		f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ':' })
		if len(f) == 0 || strings.ContainsRune(f[0], 0) {
			continue
		}
		k := strings.TrimRight(f[0], "\r")
		if k == "" {
			continue
		}
		keys = append(keys, k, strings.ToUpper(k), strings.ToLower(k), strings.Trim(k, `"`))
	}
	return append(keys, "no-such-key", "x", "k", "a b", `"a b"`)
}

// srcOurQuery answers queries as "postmap -q -" prints them.
func srcOurQuery(t *testing.T, m Map, keys []string) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		v, ok, err := m.Lookup(context.Background(), k)
		if err != nil {
			t.Fatalf("lookup %q: %v", k, err)
		}
		if ok {
			fmt.Fprintf(&b, "%s\t%s\n", k, v)
		}
	}
	return b.Bytes()
}

// srcEntries lists m's entries as sorted "key\tvalue" lines.
func srcEntries(t *testing.T, m Map) []string {
	var out []string
	err := m.(Iterable).Entries(context.Background(), func(e Entry) bool {
		out = append(out, e.Key+"\t"+e.Value)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// srcDropYP removes the entries postalias adds on its own.
func srcDropYP(l []string) []string {
	return slices.DeleteFunc(l, func(s string) bool {
		return s == "@\t@" || strings.HasPrefix(s, "YP_LAST_MODIFIED\t") || strings.HasPrefix(s, "YP_MASTER_NAME\t")
	})
}

// srcFirstDiff describes the first difference between two line lists.
func srcFirstDiff(got, want []string) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w || i >= len(got) || i >= len(want) {
			return fmt.Sprintf("line %d (of %d/%d):\n got: %q\nwant: %q", i, len(got), len(want), g, w)
		}
	}
	return "equal"
}

// srcDiff compares one source file, built as typ, with the real command.
func srcDiff(t *testing.T, cfg, path string, src []byte, typ string, aliases bool) {
	t.Helper()
	prog := "postmap"
	if aliases {
		prog = "postalias"
	}
	var res oracle.Result
	if typ != "texthash" {
		res = oracle.Run(t, nil, prog, "-c", cfg, typ+":"+path)
		if res.Code != 0 {
			t.Fatalf("%s %s:%s: exit %d: %s", prog, typ, path, res.Code, res.Stderr)
		}
	}
	w := &srcWarnings{prog: "postmap"}
	if typ != "texthash" {
		w.prog = prog
	}
	m, err := Default().Open(context.Background(), typ+":"+path, w.opts(aliases))
	if err != nil {
		t.Fatal(err)
	}
	dump := oracle.Run(t, nil, "postmap", "-c", cfg, "-s", typ+":"+path)
	// Warnings in the order Postfix prints them: texthash reads the file
	// when postmap -s opens it; the others when the table is built.
	if typ == "texthash" {
		res = dump
	}
	if got, want := w.lines, srcLines(res.Stderr); !slices.Equal(got, want) {
		t.Errorf("%s %s warnings differ: %s", typ, filepath.Base(path), srcFirstDiff(got, want))
	}
	if got, want := srcEntries(t, m), srcDropYP(srcSortedLines(dump.Stdout)); !slices.Equal(got, want) {
		t.Errorf("%s %s: entries differ from postmap -s: %s", typ, filepath.Base(path), srcFirstDiff(got, want))
	}
	keys := srcQueryKeys(src)
	var in bytes.Buffer
	var valid []string
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "\n") || !utf8.ValidString(k) || (aliases && k == "@") {
			continue // postmap warns about non-UTF-8 queries
		}
		valid = append(valid, k)
		in.WriteString(k + "\n")
	}
	q := oracle.Run(t, in.Bytes(), "postmap", "-c", cfg, "-q", "-", typ+":"+path)
	if got := srcOurQuery(t, m, valid); !bytes.Equal(got, q.Stdout) {
		t.Errorf("%s %s: queries differ: %s", typ, filepath.Base(path),
			srcFirstDiff(strings.Split(string(got), "\n"), strings.Split(string(q.Stdout), "\n")))
	}
}

// TestSrcCorpusVsPostfix builds every file in testdata/text with the real
// postmap (or postalias, for *.aliases) and compares warnings, postmap -s
// and postmap -q answers with ours, byte for byte.
func TestSrcCorpusVsPostfix(t *testing.T) {
	oracle.Require(t, "postmap")
	cfg := oracle.ConfigDir(t, "")
	files, err := filepath.Glob("testdata/text/*")
	if err != nil || len(files) < 20 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			os.Chmod(dir, 0o755)
			path := filepath.Join(dir, filepath.Base(f))
			if err := os.WriteFile(path, src, 0o644); err != nil {
				t.Fatal(err)
			}
			// Postfix reads a texthash file again while it looks freshly
			// written, repeating its warnings.
			oracle.Backdate(t, path)
			aliases := strings.HasSuffix(f, ".aliases")
			// Every file as hash; a few also as the other types, whose
			// duplicate warnings differ (the oracle runs are slow).
			types := []string{"hash"}
			switch filepath.Base(f) {
			case "dups.map", "quotes.map", "continuation.map":
				types = append(types, "lmdb", "btree", "texthash")
			case "aliases.aliases":
				types = append(types, "lmdb")
			}
			for _, typ := range types {
				srcDiff(t, cfg, path, src, typ, aliases)
			}
		})
	}
}

// srcRandomTable writes a random postmap or aliases source file.
func srcRandomTable(rng *rand.Rand, n int, aliases bool) []byte {
	parts := []string{"a", "B", "Zz", "é", "Ä", "ø", "дом", "x.y", "-", "_", "1", "\\", "\"", "\" \"", "@", "+", "%", "!", "|", ",", "(", ")", "<", ">", "[", "]", ":", ";", ".", "\t", "  "}
	word := func(max int) string {
		var b strings.Builder
		for i := rng.Intn(max) + 1; i > 0; i-- {
			p := parts[rng.Intn(len(parts))]
			if i == 1 || b.Len() == 0 {
				p = strings.TrimSpace(p)
				if p == "" {
					p = "k"
				}
			}
			b.WriteString(p)
		}
		return b.String()
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		switch r := rng.Intn(40); {
		case r == 0:
			b.WriteString("# comment " + word(3) + "\n")
		case r == 1:
			b.WriteString("   " + word(4) + "\n")
		case r == 2:
			b.WriteString("\n")
		default:
			key := word(4)
			if r == 3 {
				key = strings.ToUpper(key)
			}
			if r == 4 {
				key = `"` + key + `"`
			}
			sep := " "
			if aliases {
				sep = ": "
			}
			b.WriteString(fmt.Sprintf("%s%s%s %d\n", key, sep, word(6), i))
		}
	}
	return []byte(b.String())
}

// TestSrcRandomVsPostfix compares generated tables (seeded) with postmap and
// postalias.
func TestSrcRandomVsPostfix(t *testing.T) {
	oracle.Require(t, "postmap")
	cfg := oracle.ConfigDir(t, "")
	for seed := int64(1); seed <= 4; seed++ {
		for _, aliases := range []bool{false, true} {
			t.Run(fmt.Sprintf("seed%d-aliases%v", seed, aliases), func(t *testing.T) {
				rng := rand.New(rand.NewSource(seed))
				src := srcRandomTable(rng, 1500, aliases)
				dir := t.TempDir()
				os.Chmod(dir, 0o755)
				path := filepath.Join(dir, "random")
				if err := os.WriteFile(path, src, 0o644); err != nil {
					t.Fatal(err)
				}
				oracle.Backdate(t, path)
				srcDiff(t, cfg, path, src, "hash", aliases)
			})
		}
	}
}

// TestSrcReadSource checks the exported parser directly.
func TestSrcReadSource(t *testing.T) {
	tests := []struct {
		name, in string
		opts     Options
		want     []Record
		warn     []string
	}{
		{"fold", "Foo@Example.COM  Bar  baz \n", Options{}, []Record{{"foo@example.com", "Bar  baz", 1}}, nil},
		{"nofold", "Foo B\n", Options{NoFold: true}, []Record{{"Foo", "B", 1}}, nil},
		{"continuation line number", "\n# c\nk v\n  w\n", Options{}, []Record{{"k", "v  w", 3}}, nil},
		{"quoted keeps quotes", `"A b" c` + "\n", Options{}, []Record{{`"a b"`, "c", 1}}, nil},
		{"missing value", "k\n", Options{}, nil, []string{"f, line 1: expected format: key whitespace value"}},
		{"alias list", "List: a,b ,  c\n", Options{Aliases: true}, []Record{{"list", "a, b, c", 1}}, nil},
		{"alias backslash", "x: \\root\n", Options{Aliases: true}, []Record{{"x", "root", 1}}, nil},
		{"alias not local", "a@b: c\n", Options{Aliases: true}, nil, []string{"f, line 1: name must be local"}},
		{"duplicates kept", "a 1\nA 2\n", Options{}, []Record{{"a", "1", 1}, {"a", "2", 2}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warns []string
			tt.opts.Warn = func(w Warning) { warns = append(warns, w.String()) }
			got, err := ReadSource(strings.NewReader(tt.in), "f", tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("records = %+v, want %+v", got, tt.want)
			}
			if !slices.Equal(warns, tt.warn) {
				t.Errorf("warnings = %q, want %q", warns, tt.warn)
			}
		})
	}
}

func TestSrcDedupeRecords(t *testing.T) {
	var warns []string
	opts := Options{Warn: func(w Warning) { warns = append(warns, w.String()) }}
	in := []Record{{"a", "1", 1}, {"b", "2", 2}, {"a", "3", 3}, {"b", "4", 4}, {"c", "5", 5}}
	got := DedupeRecords(in, "f.db", opts)
	want := []Record{{"a", "1", 1}, {"b", "2", 2}, {"c", "5", 5}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if w := []string{`f.db: duplicate entry: "a"`, `f.db: duplicate entry: "b"`}; !slices.Equal(warns, w) {
		t.Errorf("warnings %q, want %q", warns, w)
	}
}

// TestSrcReadSourceDeduped checks the duplicate policies and that every
// warning comes in line order.
func TestSrcReadSourceDeduped(t *testing.T) {
	in := "a 1\nbad\nA 2\nb 3\nx\nb 4\nC 5\n"
	tests := []struct {
		name string
		d    DedupeOptions
		want []Record
		warn []string
	}{
		{"warn", DedupeOptions{Label: "f.db"}, []Record{{"a", "1", 1}, {"b", "3", 4}, {"c", "5", 7}}, []string{
			"f, line 2: expected format: key whitespace value",
			`f.db: duplicate entry: "a"`,
			"f, line 5: expected format: key whitespace value",
			`f.db: duplicate entry: "b"`,
		}},
		{"texthash", DedupeOptions{Label: "ignored", Texthash: true}, []Record{{"a", "1", 1}, {"b", "3", 4}, {"c", "5", 7}}, []string{
			"f, line 2: expected format: key whitespace value -- ignoring this line",
			`f, line 3: duplicate entry: "A"`,
			"f, line 5: expected format: key whitespace value -- ignoring this line",
			`f, line 6: duplicate entry: "b"`,
		}},
		{"replace", DedupeOptions{Duplicates: DuplicatesReplace, Label: "f.db"}, []Record{{"a", "2", 3}, {"b", "4", 6}, {"c", "5", 7}}, []string{
			"f, line 2: expected format: key whitespace value",
			"f, line 5: expected format: key whitespace value",
		}},
		{"ignore", DedupeOptions{Duplicates: DuplicatesIgnore, Label: "f.db"}, []Record{{"a", "1", 1}, {"b", "3", 4}, {"c", "5", 7}}, []string{
			"f, line 2: expected format: key whitespace value",
			"f, line 5: expected format: key whitespace value",
		}},
		{"have", DedupeOptions{Label: "f.db", Have: func(k string) bool { return k == "c" }}, []Record{{"a", "1", 1}, {"b", "3", 4}}, []string{
			"f, line 2: expected format: key whitespace value",
			`f.db: duplicate entry: "a"`,
			"f, line 5: expected format: key whitespace value",
			`f.db: duplicate entry: "b"`,
			`f.db: duplicate entry: "c"`,
		}},
		{"have replace", DedupeOptions{Duplicates: DuplicatesReplace, Have: func(k string) bool { return k == "c" }}, []Record{{"a", "2", 3}, {"b", "4", 6}, {"c", "5", 7}}, []string{
			"f, line 2: expected format: key whitespace value",
			"f, line 5: expected format: key whitespace value",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warns []string
			opts := Options{Warn: func(w Warning) { warns = append(warns, w.String()) }}
			got, err := ReadSourceDeduped(strings.NewReader(in), "f", opts, tt.d)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("records = %+v, want %+v", got, tt.want)
			}
			if !slices.Equal(warns, tt.warn) {
				t.Errorf("warnings = %q, want %q", warns, tt.warn)
			}
		})
	}
}

// srcFuzzCheck runs the parser on arbitrary input; it must not panic, and
// what it returns must be well formed.
func srcFuzzCheck(t *testing.T, in string, aliases bool) {
	recs, err := ReadSource(strings.NewReader(in), "f", Options{Aliases: aliases, Warn: func(Warning) {}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Line < 1 || strings.Contains(r.Key, "\n") || strings.Contains(r.Value, "\n") {
			t.Fatalf("bad record %+v", r)
		}
		if !aliases && (r.Value == "" || r.Key == "") {
			t.Fatalf("empty key or value %+v", r)
		}
		if r.Key != FoldKey(r.Key) {
			t.Fatalf("key not folded %+v", r)
		}
	}
	// Deduplicated: one record per key, the first or the last of recs.
	for _, dups := range []Duplicates{DuplicatesWarn, DuplicatesReplace} {
		uniq, err := ReadSourceDeduped(strings.NewReader(in), "f", Options{Aliases: aliases, Warn: func(Warning) {}}, DedupeOptions{Duplicates: dups})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]Record{}
		for _, r := range recs {
			if _, ok := want[r.Key]; !ok || dups == DuplicatesReplace {
				want[r.Key] = r
			}
		}
		if len(uniq) != len(want) {
			t.Fatalf("dups %d: %d records, want %d", dups, len(uniq), len(want))
		}
		for _, r := range uniq {
			if want[r.Key] != r {
				t.Fatalf("dups %d: kept %+v, want %+v", dups, r, want[r.Key])
			}
		}
	}
}

func FuzzTextSource(f *testing.F) {
	for _, s := range []string{"k v\n", "\"a b\" c\n  d\n# x\n", "a\\ b v\n\"x\\\" y\n", " lead\nk: v\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) { srcFuzzCheck(t, in, false) })
}

func FuzzTextAliases(f *testing.F) {
	for _, s := range []string{"a: b, c\n", "\"w n\": \\root, \"|cmd x\"\n  d\n", "a@b: c\n(x) y: [1.2.3.4], <a@b>\n", "x: \\\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) { srcFuzzCheck(t, in, true) })
}

package maps

import (
	"regexp"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
)

func FuzzPCRETable(f *testing.F) {
	for _, s := range []struct{ table, key string }{
		{"/^(a+?)/U [$1]\n", "aaa"},
		{"/(?<=q)w/ lb\n/^(a)\\1$/ br\n", "qw"},
		{"/a++b/ poss\n/(?>x|xy)z/ atomic\n", "aab"},
		{"/^\\Qa.b\\E$/ q\n/[[:digit:]\\s]+/ cls\n", "a.b"},
		{"/^e$/E end\n/b/A anch\n", "e\n"},
		{"/(?x) a b # c\n/ ext\n/(?i)X(?-i)y/ inl\n", "ab"},
		{"/^(?<n>x)\\k<n>$/ named\n/\\x{e9}/ hex\n", "xx"},
		{"/(\\w+)\\s+\\1\\b/m dup\n/(.)\\1{7,}/ run\n", "the the"},
		{"/^Subject:(?=.*\\bwin\\b)/ la\n/(?<=\\$)\\d+/ lb\n", "Subject: win $5"},
		{"~^>~m quote\n/^Received:.*\\n.*\\n/ nl\n/^From:.*(?<!\\.org)>$/ nlb\n", "a\n> b"},
	} {
		f.Add(s.table, s.key)
	}
	f.Fuzz(func(t *testing.T, table, key string) {
		reFuzzTable(t, "pcre", table, key)
		// A rewritten pattern must compile in regexp2, and where the
		// rewriter vouches for Go, in Go too.
		for _, ln := range strings.Split(table, "\n") {
			re2s, goS, goSafe, _, perr := rePCRERewrite(ln, rePCREFlags{i: true, s: true}, false, false)
			if perr != nil {
				continue
			}
			if goSafe {
				if _, err := regexp.Compile(goS); err != nil &&
					!strings.Contains(err.Error(), "repetition") && !strings.Contains(err.Error(), "too large") && !strings.Contains(err.Error(), "repeat count") {
					t.Fatalf("pattern %q: Go form %q: %v", ln, goS, err)
				}
			}
			_, _ = regexp2.Compile(re2s, regexp2.None)
		}
	})
}

func BenchmarkPCRELookup(b *testing.B) { reBenchLookup(b, "pcre") }

func BenchmarkPCRELoad(b *testing.B) { reBenchLoad(b, "pcre") }

package maps

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// reFilterKeys are keys for the escape and prefilter differential tests:
// letters and their escapes, Latin-1 and UTF-8 bytes, header and body
// lines of the shapes the prefilters look for.
var reFilterKeys = []string{
	"t", "T", "a\tb", "n", "x41", "A", "a", "\x80", "a\x80b", "é", "caf\xe9", ".", "d", "D", "1",
	"w", "_", "-", " ", "ab", "x ab", "<ab", "z", "Z", `\d`, `\t`, "x\\y", "q",
	"Subject: free money", "Subject: FREE cash now", "subject: Win a prize", "Subject: winner",
	"Subject: caf\xe9 cr\xe8me", "Subject: Re: hello", "Subject: zzz aaa", "SUBJECT: ALL CAPS LINE",
	"From: a@b.org>", "From: x <a@b.com>", "From: a@example.org", "To: x, y, z, w",
	"Received: from a (b [10.1.2.3])", "Received: from mail.example.com (x [192.168.1.1]) by y",
	"Received: from h (h [1.2.3.4])\n\tby mx.example.net with ESMTP id ABC123",
	"Content-Type: text/plain; charset=big5", "X-Mailer: Outlook 2003",
	"the the cat", "The the", "a  a", "nothe the", "the then", "we are are here", "x x", "ab ab\tab",
	"aaaaaaaa", "aaaaaaa", "----------", "========", "AAAAaaaa", "\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9",
	"hahaha", "haha", "HaHaHa!", "price $100", "$ 100", "100$", "freedom", "free", "free dom",
	"click HERE", "CLICK   here", "clickhere", "> quoted", ">> twice", "not > quoted",
	"ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMN", "abcdefghijklmnopq", "1.2.3.4", "10.0.0.255", "1.2.3",
	"555-123-4567", "555 123 4567", "   ", "", "!!!", "?!", "1234", "money", "MONEY", "mon ey",
	"remove from this list", "removed from our mailing", "opt-in", "opt in", "optout", "OPT OUT",
	"BEGIN", "-----BEGIN PGP", "=20", "=3D", "=", "wrote:", "On Mon, Bob wrote:",
	"abc ABC", "abc abc", "aa", "aaa", "abd", "cefff", "abef",
}

// TestRegexpEscapesOracle compares, one pattern per table, what
// backslash escapes mean in regexp: (glibc regcomp: with the default
// REG_ICASE "\d" or "\t" match nothing) and in pcre: tables, with and
// without the "i" flag, against postmap -q.
func TestRegexpEscapesOracle(t *testing.T) {
	oracle.Require(t, "postmap")
	dir := reOracleDir(t)
	tmp := t.TempDir()
	pats := []string{`\t`, `\n`, `\x41`, `\x80`, `\.`, `\d`, `\D`, `\w`, `\W`, `\s`, `\S`, `\b`, `\B`,
		`\<ab`, `ab\>`, `\A`, `\z`, `\T`, `\q`, `x\x`, `a\|b`, `[\d]`, `\%`, `\-`}
	hits, n := 0, 0
	for _, typ := range []string{"regexp", "pcre"} {
		for _, p := range pats {
			for _, flags := range []string{"", "i"} {
				n++
				file := filepath.Join(tmp, fmt.Sprintf("%s%d", typ, n))
				if err := os.WriteFile(file, []byte("/"+p+"/"+flags+" hit\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if reDiff(t, dir, typ, file, reBatchKeys(), nil) > 0 {
					hits++
				}
				reFastSlow(t, typ, file)
			}
		}
	}
	if hits < n/2 {
		t.Errorf("only %d of %d escape tables matched any key", hits, n)
	}
}

// TestRegexpPrefilterOracle compares rules of the shapes the prefilters
// understand (alternations, optional parts, case, anchors, repeats,
// back-references, lookarounds, (?m)^), one per table, with postmap -q,
// and the prefiltered lookups with plain rule-by-rule evaluation.
func TestRegexpPrefilterOracle(t *testing.T) {
	oracle.Require(t, "postmap")
	dir := reOracleDir(t)
	tmp := t.TempDir()
	common := []string{
		`/(money|cash|income)/`, `/(money|cash|income)/i`, `/remove(d)? from (this|our) (list|mailing)/`,
		`/(opt[- ]?in|opt[- ]?out)/`, `/^Subject:.*\bfree\b/`, `/^Subject:.*(win|prize)/`,
		`/^(To|Cc):.*,.*,/`, `/^[^a-z]*$/`, `/^.{1,3}$/`, `/^.{10}$/`, `/[A-Z]{15,}/`, `/[A-Z]{15,}/i`,
		`/(ha){3,}/`, `/(.)\1{7,}/`, `/(\w)\1\1/`, `/[^ -~]/`, `/\$[0-9]+/`, `/=$/`, `/^-{5,}/`,
		`/[0-9]{3}[-. ][0-9]{3}[-. ][0-9]{4}/`, `/^Received:.*\[(10|127|192\.168)\./`,
		`/^Received:.*with ESMTP id ([A-Z0-9]+)/`, `/caf.*cr/`, `/^>/`, `/^$/`, `/x*/`,
		`/^(money|cash)$/`, `/^(a+|b)$/`, `/^(b|a+)$/`, `/^(ab|c)(d|ef+)$/`, `/^[[:space:]]*[[:punct:]]+[[:space:]]*$/`, `/(Red Hat|Debian)/`,
	}
	pcreOnly := []string{
		`/(\w+)\s+\1\b/`, `/(\w+)\s+\1\b/i`, `/(\w+)\s+\1/`, `/\b(\w+)\s+\1\b/m`, `/^Subject:(?=.*\bwin\b)/`,
		`/^From:.*(?<!\.org)>$/`, `/(?<=\$)\d+/`, `/\bfree(?!dom)\b/`, `/(?i:CLICK)\s+HERE/`,
		`/^\s*$(?#comment)/`, `/\d{1,3}(?:\.\d{1,3}){3}/`, `~^>~m`, `/^>/m`, `/^Received:.*\n.*\n/`,
		`/^Subject: Re: (.*)/m`, `/a(?=b)/`, `/(?=.*cash).*money/`, `/(.)\1{7,}/i`, `/^(\w+) \1$/`,
		`/(?-i:([a-z]+))\s+\1/`, `/(?-i:([a-z]+))\s+(?-i)\1/`, `/^Received:.*\[(10|127)\./m`,
		`/^Received:.*(mx|by)/m`, `/^By\b.*mx/m`,
	}
	hits, n := 0, 0
	for _, typ := range []string{"regexp", "pcre"} {
		rules := common
		if typ == "pcre" {
			rules = append(append([]string{}, common...), pcreOnly...)
		}
		for _, r := range rules {
			n++
			file := filepath.Join(tmp, fmt.Sprintf("%s%d", typ, n))
			if err := os.WriteFile(file, []byte(r+" hit\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if reDiff(t, dir, typ, file, reBatchKeys(), reLineKeys) > 0 {
				hits++
			}
			reFastSlow(t, typ, file)
		}
	}
	if hits < n/2 {
		t.Errorf("only %d of %d prefilter tables matched any key", hits, n)
	}
}

// TestRegexpCapturesOracle checks $n results of rules that Go's engine
// now serves in pcre: tables, against postmap -q.
func TestRegexpCapturesOracle(t *testing.T) {
	oracle.Require(t, "postmap")
	dir := reOracleDir(t)
	table := strings.Join([]string{
		`/^Received:.*with ESMTP id ([A-Z0-9]+)/ id=$1`,
		`/^Subject: Re: (.*)/ re=$1`,
		`/^From:.*@(yahoo|hotmail|msn)\.com/ free=$1`,
		`/^Subject:.*(caf.)/ latin=$1`,
		`/^(\w+) (\w+)?/ w=$1,$2`,
		`/(money|cash)(.*)/ m=$1/$2`,
		`/^(a|ab)(c|bcd)(d*)/ p=$1.$2.$3`,
		`/^(.*?)(\d+)/ lazy=$1.$2`,
	}, "\n") + "\n"
	for _, typ := range []string{"pcre", "regexp"} {
		file := filepath.Join(t.TempDir(), "t")
		tab := table
		if typ == "regexp" {
			// No lazy quantifiers or \w+? in POSIX: drop the last rule.
			tab = strings.Join(strings.Split(table, "\n")[:7], "\n") + "\n"
		}
		if err := os.WriteFile(file, []byte(tab), 0o644); err != nil {
			t.Fatal(err)
		}
		keys := append(reBatchKeys(), "abcd", "abcdd", "x 12 y 34", "Subject: Re: caf\xe9")
		if reDiff(t, dir, typ, file, keys, nil) == 0 {
			t.Errorf("%s: no key matched", typ)
		}
		reFastSlow(t, typ, file)
	}
}

// reLineKeys are keys of several lines (folded headers), asked one by one.
var reLineKeys = []string{
	"Received: from h (h [1.2.3.4])\n\tby mx.example.net with ESMTP id ABC123",
	"X-Other: a\nReceived: from x [10.0.0.1]\n by y",
	"Subject: money\n\tcash \n",
	"a\n>b\nby mx\n",
}

// reBatchKeys is reFilterKeys without the keys postmap -q - cannot read
// (with a newline), plus seeded random mixtures of them.
func reBatchKeys() []string {
	var keys []string
	for _, k := range reFilterKeys {
		if !strings.Contains(k, "\n") && k != "" {
			keys = append(keys, k)
		}
	}
	r := rand.New(rand.NewSource(1))
	base := len(keys)
	for i := 0; i < 100; i++ {
		keys = append(keys, keys[r.Intn(base)]+" "+keys[r.Intn(base)])
	}
	return keys
}

// reFastSlow checks prefiltered lookups against rule-by-rule evaluation
// for every key, including those postmap cannot be asked.
func reFastSlow(t *testing.T, typ, file string) {
	t.Helper()
	m, _ := reOurs(t, typ, file, Options{})
	rs := m.(*reTable).rules.Load()
	for _, k := range append(reBatchKeys(), reFilterKeys...) {
		v1, ok1, err1 := rs.lookup(k, true)
		v2, ok2, err2 := rs.lookup(k, false)
		if v1 != v2 || ok1 != ok2 || (err1 == nil) != (err2 == nil) {
			t.Errorf("%s key %q: fast (%q,%v,%v) slow (%q,%v,%v)", file, k, v1, ok1, err1, v2, ok2, err2)
		}
	}
}

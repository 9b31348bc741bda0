package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// pcRandomFiles is how many random main.cf files TestPostconfOracleRandom
// compares; each costs two runs of the real postconf.
const pcRandomFiles = 200

// pcKnownPool are built-in parameters the random files set and refer to.
// Their defaults cover the interesting cases: values with references
// (myorigin, mydestination), empty ones (relayhost, recipient_delimiter,
// stress), ones that depend on compatibility_level (relay_domains,
// mynetworks_style), list-valued ones and raw ones (forward_path,
// luser_relay).
var pcKnownPool = []string{
	"myorigin", "mydomain", "myhostname", "mydestination", "relay_domains", "relayhost",
	"recipient_delimiter", "stress", "mail_name", "smtpd_banner", "alias_maps",
	"local_recipient_maps", "virtual_alias_maps", "default_transport", "mynetworks_style",
	"mynetworks", "inet_protocols", "forward_path", "luser_relay", "mail_version",
	"append_dot_mydomain", "smtputf8_enable", "local_transport", "inet_interfaces",
}

// pcLevels are compatibility_level values and level operands.
var pcLevels = []string{"0", "1", "2", "3.6", "3.7", "3.6.1", "10", "3", "2.11"}

// pcGen builds one random main.cf from several segments. Each segment
// has its own user-defined names (prefix uN_), so references from one
// segment to another's names are rare and most undefined names stay
// undefined.
type pcGen struct {
	r      *rand.Rand
	prefix string
	user   []string // user-defined names of the current segment
	b      strings.Builder
	// risky allows forms that can make the whole file fatal (recursion,
	// malformed levels, stray braces).
	risky bool
	// refs are the names a value may refer to; setInFile the names set
	// anywhere in the file.
	refs      []string
	setInFile map[string]bool
}

// pcLeafPool are built-in parameters whose defaults refer to no other
// parameter except compatibility_level.
var pcLeafPool = []string{"relayhost", "recipient_delimiter", "stress", "mail_name", "mail_version",
	"default_transport", "alias_maps", "virtual_alias_maps", "mynetworks_style", "relay_domains_reject_code",
	"inet_protocols", "append_dot_mydomain", "smtputf8_enable"}

func (g *pcGen) pick(list []string) string { return list[g.r.IntN(len(list))] }

// name returns a name to refer to. Outside risky segments references
// only go to names later in the segment's list, to names no segment sets
// whose defaults refer to nothing set, or to undefined names, so that
// there are no reference cycles.
func (g *pcGen) name() string {
	switch g.r.IntN(10) {
	case 0, 1, 2, 3:
		if len(g.refs) > 0 {
			return g.pick(g.refs)
		}
		return g.prefix + "undef"
	case 4:
		return g.prefix + "undef"
	case 5:
		return "compatibility_level"
	}
	var leaf []string
	for _, n := range pcLeafPool {
		if !g.setInFile[n] {
			leaf = append(leaf, n)
		}
	}
	if len(leaf) == 0 || g.risky && g.r.IntN(3) == 0 {
		return g.pick(pcKnownPool)
	}
	return g.pick(leaf)
}

// word is literal text; some of it looks like syntax.
func (g *pcGen) word() string {
	return g.pick([]string{"a", "x.example", "10", "3.6", "hash:/etc/x", ",", ", ", " ", "  ", "\t",
		"#c", "# x", "-o", "yes", "no", "", "b c", "=", "?", ":", "a{b}c", "}"})
}

// operand is one side of a comparison.
func (g *pcGen) operand(depth int) string {
	switch g.r.IntN(4) {
	case 0:
		return g.pick(pcLevels)
	case 1:
		return "$compatibility_level"
	case 2:
		return g.value(depth + 1)
	}
	return "$" + g.name()
}

// value returns a random value text built from every $ form (postconf(5)).
func (g *pcGen) value(depth int) string {
	n := 1 + g.r.IntN(2)
	var parts []string
	for range n {
		parts = append(parts, g.part(depth))
	}
	return strings.Join(parts, g.pick([]string{"", " ", ", ", "-", "/"}))
}

func (g *pcGen) part(depth int) string {
	if depth >= 3 || g.r.IntN(4) < depth {
		if g.r.IntN(2) == 0 {
			return "$" + g.name()
		}
		return g.word()
	}
	n := g.name()
	sub := func() string { return g.value(depth + 1) }
	ws := func() string { return g.pick([]string{"", "", " ", "  "}) }
	switch g.r.IntN(18) {
	case 0, 1:
		return g.word()
	case 2:
		return "$" + n
	case 3:
		return "${" + n + "}"
	case 4:
		return "$(" + n + ")"
	case 5:
		return "$$" + g.pick([]string{"", "x", "{a}"})
	case 6:
		return "${" + n + "?" + g.safe(sub()) + "}"
	case 7:
		return "${" + n + "?{" + sub() + "}}"
	case 8:
		return "${" + n + ":" + g.safe(sub()) + "}"
	case 9:
		return "${" + n + ":{" + sub() + "}}"
	case 10:
		return "${" + n + "?" + ws() + "{" + sub() + "}" + ws() + ":" + ws() + "{" + sub() + "}}"
	case 11, 12:
		op := g.pick([]string{"==", "!="})
		return "${{" + g.operand(depth) + "}" + ws() + op + ws() + "{" + g.operand(depth) + "}" + ws() +
			"?" + ws() + "{" + sub() + "}" + ws() + ":" + ws() + "{" + sub() + "}}"
	case 13, 14:
		op := g.pick([]string{"<level", "<=level", ">level", ">=level"})
		l, r := "$compatibility_level", g.pick(pcLevels)
		if g.r.IntN(3) == 0 {
			l, r = r, l
		}
		if g.risky && g.r.IntN(4) == 0 {
			r = g.operand(depth)
		}
		return "${{" + l + "} " + op + " {" + r + "} ? {" + sub() + "} : {" + sub() + "}}"
	case 15:
		// A comparison without branches yields "true" or nothing.
		return "${{" + g.operand(depth) + "} " + g.pick([]string{"==", "!="}) + " {" + g.operand(depth) + "}}"
	case 16:
		return "${" + ws() + n + ws() + "?" + g.safe(sub()) + "}"
	}
	if g.risky {
		return g.pick([]string{"${", "$", "${a b}", "${x?{a} b}", "${{1} ~ {1}}", "$()", "}", "{"})
	}
	return "$" + n + g.pick([]string{"-x", ".y", "x"})
}

// safe keeps a value usable in ${name?value} without braces, where a
// ':' would start an else branch: such a value becomes a plain word.
func (g *pcGen) safe(v string) string {
	if strings.ContainsAny(v, ":") {
		return "v"
	}
	return v
}

// entry writes "name = value" with random spacing and, if wild,
// continuation lines with comment and blank lines inside and a '#' that
// is not a comment at the end.
func (g *pcGen) entry(name, value string, wild bool) {
	sp := func() string { return g.pick([]string{"", " ", "  ", "\t", " \t"}) }
	line := name + sp() + "=" + sp()
	fields := strings.SplitAfter(value, " ")
	for i, f := range fields {
		if wild && i > 0 && g.r.IntN(4) == 0 {
			// Break here: a continuation line, maybe after comments and
			// blank lines, which do not end the logical line.
			g.b.WriteString(line + "\n")
			for range g.r.IntN(3) {
				g.b.WriteString(g.pick([]string{"# comment\n", "\n", "   \n", "  # indented comment\n", "#\n"}))
			}
			line = g.pick([]string{" ", "\t", "  ", " \t"})
		}
		line += f
	}
	end := ""
	if wild {
		end = g.pick([]string{"", "", " # not a comment"})
	}
	g.b.WriteString(line + sp() + end + "\n")
}

// plan picks the names segment k sets, in order, some of them twice.
func (g *pcGen) plan(k int) (user, set []string) {
	prefix := fmt.Sprintf("u%d_", k)
	for i := range 1 + g.r.IntN(4) {
		user = append(user, fmt.Sprintf("%s%c", prefix, 'a'+i))
	}
	for _, u := range user {
		if g.r.IntN(5) > 0 {
			set = append(set, u)
		}
	}
	for range g.r.IntN(4) {
		set = append(set, g.pick(pcKnownPool))
	}
	if g.r.IntN(3) == 0 {
		set = append(set, "compatibility_level")
	}
	if g.r.IntN(8) == 0 {
		set = append(set, "smtpd_restriction_classes")
	}
	g.r.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
	return user, set
}

// segment writes the entries of segment k.
func (g *pcGen) segment(k int, user, set []string) {
	g.prefix = fmt.Sprintf("u%d_", k)
	g.user = user
	var entries [][2]string
	for i, name := range set {
		g.refs = nil
		for _, n := range set[i+1:] {
			if n != name && n != "compatibility_level" {
				g.refs = append(g.refs, n)
			}
		}
		if g.risky {
			g.refs = append(g.refs, user...)
		}
		var v string
		curated := true
		switch name {
		case "compatibility_level":
			v = g.pick(pcLevels)
			if g.r.IntN(4) == 0 {
				v = "${{1} <level {2} ? {" + g.pick(pcLevels) + "} : {0}}"
			}
		case "smtpd_restriction_classes":
			v = g.pick(user) + ", " + g.prefix + "undef"
		case "mynetworks_style":
			v = g.pick([]string{"host", "subnet", "class", "HOST", "${stress?{host}:{subnet}}"})
		case "inet_interfaces":
			v = g.pick([]string{"all", "127.0.0.1", "127.0.0.1, [::1]"})
		case "inet_protocols":
			v = g.pick([]string{"all", "ipv4", "ipv6", "ipv4, ipv6"})
		case "mynetworks":
			v = g.pick([]string{"127.0.0.0/8", "$myhostname", "10.0.0.0/8 [::1]/128"})
		case "myhostname", "mydomain":
			v = g.pick([]string{"mx.example.com", "example.org", "$" + g.name() + ".example", "x${stress?y}.z", "a$compatibility_level.b"})
		default:
			v = g.value(0)
			curated = false
		}
		if !curated && g.r.IntN(10) == 0 {
			v = ""
		}
		entries = append(entries, [2]string{name, v})
	}
	if len(entries) > 0 && g.r.IntN(5) == 0 {
		// A duplicate: the last one wins.
		entries = append(entries, entries[g.r.IntN(len(entries))])
	}
	for _, e := range entries {
		g.entry(e[0], e[1], !isCurated(e[0]))
		if g.r.IntN(4) == 0 {
			g.b.WriteString(g.pick([]string{"# comment line\n", "\n", "  \n", "#name = value\n"}))
		}
	}
	if g.risky && len(user) >= 2 {
		// A reference cycle: fatal "unreasonable macro call nesting".
		g.entry(user[0], "x $"+user[1], true)
		g.entry(user[1], "${"+user[0]+"?y}", true)
	}
}

// isCurated reports whether the random files give name only values from
// a fixed list: Postfix checks these parameters (or evaluates them before
// compatibility_level is known) and a random value would make nearly
// every file fatal.
func isCurated(name string) bool {
	switch name {
	case "compatibility_level", "smtpd_restriction_classes", "mynetworks_style", "inet_interfaces",
		"inet_protocols", "mynetworks", "myhostname", "mydomain":
		return true
	}
	return false
}

// pcRandomMainCF returns random main.cf number i.
func pcRandomMainCF(i int) []byte {
	g := &pcGen{r: rand.New(rand.NewPCG(uint64(i), 0x9e3779b97f4a7c15))}
	if g.r.IntN(10) == 0 {
		g.b.WriteString("  leading = whitespace\n")
	}
	segs := 1 + g.r.IntN(3)
	users := make([][]string, segs)
	sets := make([][]string, segs)
	g.setInFile = map[string]bool{}
	for k := range segs {
		users[k], sets[k] = g.plan(k)
		for _, n := range sets[k] {
			g.setInFile[n] = true
		}
	}
	for k := range segs {
		g.risky = g.r.IntN(12) == 0
		g.segment(k, users[k], sets[k])
	}
	return []byte(g.b.String())
}

// pcRandomDerived are checked with -x in every random file, besides the
// names it sets.
var pcRandomDerived = append([]string{"proxy_read_maps", "smtpd_banner", "smtpd_client_event_limit_exceptions"}, pcDerived...)

// TestPostconfOracleRandom generates random main.cf files (seeded, so
// every run sees the same ones) using every $ form of postconf(5) nested a
// few levels, continuation and comment lines, duplicates and odd spacing,
// and compares postkit's postconf -n, and -x of every name set plus a
// fixed set of derived names, with the real postconf: stdout byte for
// byte, the exit code, the fatal error and the warnings.
func TestPostconfOracleRandom(t *testing.T) {
	t.Parallel()
	oracle.Require(t, "postconf")
	var calls [][]string
	files := make([][]byte, pcRandomFiles)
	for i := range files {
		files[i] = pcRandomMainCF(i)
		dir := pcConfigDir(t, files[i])
		names := append(pcNamesIn(t, "main.cf", files[i]), pcRandomDerived...)
		calls = append(calls, []string{"-c", dir, "-n"}, append([]string{"-c", dir, "-x"}, names...))
	}
	want := pcOracleAll(t, nil, calls)
	fatal, bad := 0, 0
	for i, file := range files {
		for j := 2 * i; j < 2*i+2; j++ {
			args := calls[j]
			if want[j].Code != 0 {
				fatal++
			}
			got := pcRunOurs(args...)
			if got.Code != want[j].Code || string(got.Stdout) != string(want[j].Stdout) {
				if bad++; bad > 5 {
					continue
				}
				t.Errorf("file %d:\n%s\npostconf %s:\n got exit %d stdout:\n%s\nwant exit %d stdout:\n%s\nstderr got %q\nwant %q",
					i, file, args[2:], got.Code, got.Stdout, want[j].Code, want[j].Stdout, got.Stderr, want[j].Stderr)
				continue
			}
			if want[j].Code == 0 {
				pcCompareStderr(t, args[2:], got.Stderr, want[j].Stderr)
				continue
			}
			// When several values are broken, Postfix names the first in
			// its internal table order, which postkit does not know: the
			// fatal error must match, the warnings before it need not.
			if g, w := pcFatalLine(got.Stderr), pcFatalLine(want[j].Stderr); g != w {
				t.Errorf("file %d:\n%s\npostconf %s: fatal %q, want %q", i, file, args[2:], g, w)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d runs differ in all (5 shown)", bad)
	}
	// The generator must mostly produce files Postfix accepts, or the
	// forms are not exercised.
	if fatal > len(calls)/5 {
		t.Errorf("%d of %d runs were fatal; the generator makes too many broken files", fatal, len(calls))
	}
	t.Logf("%d files, %d runs, %d fatal", len(files), len(calls), fatal)
}

// pcFatalLine returns the "postconf: fatal:" line of stderr, or "".
func pcFatalLine(stderr []byte) string {
	for _, l := range strings.Split(string(stderr), "\n") {
		l = strings.TrimPrefix(l, "/usr/sbin/")
		if strings.HasPrefix(l, "postconf: fatal:") {
			return l
		}
	}
	return ""
}

package maps

// regexp: and pcre: tables (regexp_table(5), pcre_table(5)).
//
// Both types share one file format and one evaluator; they differ only in
// how a pattern is compiled:
//
//   - regexp: patterns are POSIX regular expressions as glibc's regcomp(3)
//     reads them (extended by default, basic with the "x" flag toggled).
//     reTranslatePOSIX turns them into Go regexp syntax, run with
//     leftmost-longest semantics; the few GNU features RE2 lacks
//     (back-references, \< and \>) run on regexp2 instead.
//   - pcre: patterns are PCRE2 patterns; rePCRERewrite turns them into
//     regexp2 syntax (see pcre.go), and the Go engine serves a rule only
//     where the answer is provably the same.
//
// Postfix runs both libraries in byte mode in the C locale: "é" in a key is
// two characters, [[:alpha:]] and \w are ASCII only, and case folding is
// ASCII only. We reproduce that by mapping every byte >= 0x80, in patterns
// and keys alike, to a private-use rune (U+F780..U+F7FF) that has no case,
// is no letter, digit or space, and therefore behaves like an opaque byte in
// both engines.
//
// Lookups try the rules in file order, first match wins, as Postfix does,
// but skip rules that cannot match: each rule whose pattern requires a
// literal (found from the Go parse tree, compared ASCII-case-folded) is
// filed under one trigram of that literal, and a lookup only visits rules
// whose trigram occurs in the key, plus every rule without such a literal
// (negated rules, if/endif, regexp2-only patterns). TestRegexpPrefilter and
// the fuzz targets check this against plain one-by-one evaluation.
//
// Known differences from Postfix 3.7 (each verified with postmap):
//
//   - regexp: rules that need the backtracking engine (back-references, \<,
//     \>) match exactly the same keys, but their $n captures follow
//     leftmost-first choices rather than POSIX leftmost-longest ones, e.g.
//     /z*(a*)((a*)*|y\>)/ on "ay" gives $2 "" where glibc gives "y".
//   - regexp: glibc sometimes reports a stale capture from a failed
//     iteration of a repeated group (/((a|ab)|\bx){,2}[a-c]/ on "xÉ1xa":
//     glibc $1 "x", postkit ""); postkit gives the POSIX answer.
//   - pcre: the PCRE2 features listed in pcre.go are refused with a warning
//     instead of being supported; the offsets in "error in regex at offset
//     N" warnings are not always PCRE2's.
//   - a regexp2 match that runs longer than reMatchTimeout fails the lookup
//     with a temporary error; PCRE2 would go on until its backtracking
//     limit.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// reMatchTimeout bounds one regexp2 match. Postfix has no timeout (PCRE2 has
// a backtracking limit instead); a runaway pattern here makes the lookup
// fail with a temporary error, which callers answer with 4xx as Postfix does
// for a table error.
const reMatchTimeout = 250 * time.Millisecond

// rePUA is added to a byte >= 0x80 to give the rune that stands for it.
const rePUA = 0xF700

// openRegexp opens a regexp: table: a file name, or inline rules
// "{ {rule}, {rule} }" (Postfix 3.7).
func openRegexp(ctx context.Context, name string, opts Options) (Map, error) {
	return reOpen("regexp", name, opts)
}

// openPCRE opens a pcre: table: a file name, or inline rules.
func openPCRE(ctx context.Context, name string, opts Options) (Map, error) {
	return reOpen("pcre", name, opts)
}

// reTable is a regexp: or pcre: table. It implements Map, Kinder and Named;
// it is deliberately not Iterable: Postfix refuses "postmap -s" on pattern
// tables with "sequence operation is not supported".
type reTable struct {
	typ, name string
	opts      Options
	inline    bool

	rules atomic.Pointer[reRuleSet]
	watch fileWatch  // file-backed tables only
	mu    sync.Mutex // serialises reloads
}

func reOpen(typ, name string, opts Options) (Map, error) {
	t := &reTable{typ: typ, name: name, opts: opts}
	if strings.HasPrefix(name, "{") {
		t.inline = true
		elems, err := reSplitInline(name)
		if err != nil {
			return nil, fmt.Errorf("maps: %s map: %w", typ, err)
		}
		rs := reBuild(typ, name, elems, &t.opts)
		t.rules.Store(rs)
		return t, nil
	}
	st, err := t.load()
	if err != nil {
		return nil, err
	}
	t.watch.init(name, st)
	return t, nil
}

// load reads the file and installs its rules; it returns the stamp of the
// version read.
func (t *reTable) load() (fileStamp, error) {
	data, st, err := readFileStamped(t.name)
	if err != nil {
		if pe, ok := err.(*fs.PathError); ok && pe.Op == "open" {
			err = fmt.Errorf("open %s: %w", t.name, pe.Err)
		}
		return fileStamp{}, &Error{Map: t.typ + ":" + t.name, Err: err}
	}
	lines := reLogicalLines(string(data), t.name, &t.opts)
	rs := reBuild(t.typ, t.name, lines, &t.opts)
	t.rules.Store(rs)
	return st, nil
}

// maybeReload re-reads the file when it changed, at most one stat per
// watchInterval. A file that cannot be read keeps the old rules.
func (t *reTable) maybeReload() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if changed, _ := t.watch.changed(); !changed {
		return
	}
	st, err := t.load()
	if err != nil {
		t.opts.Warnf("", 0, "%s:%s: reload failed, keeping the old rules: %v", t.typ, t.name, err)
		return
	}
	t.watch.set(st)
}

// Name implements Named.
func (t *reTable) Name() string { return t.typ + ":" + t.name }

// Kind implements Kinder: pattern tables see whole keys only.
func (t *reTable) Kind() Kind { return Pattern }

// Lookup implements Map. The key is never case-folded (regexp_table(5)).
func (t *reTable) Lookup(ctx context.Context, key string) (string, bool, error) {
	if !t.inline && t.watch.due() {
		t.maybeReload()
	}
	// With smtputf8_enable = yes (the default since compatibility level 1)
	// Postfix refuses keys that are not valid UTF-8: a warning, no match.
	if !utf8.ValidString(key) {
		t.opts.Warnf("", 0, "%s:%s: non-UTF-8 key \"%s\": malformed UTF-8 or invalid codepoint", t.typ, t.name, rePrintable(key))
		return "", false, nil
	}
	rs := t.rules.Load()
	v, ok, err := rs.lookup(key, true)
	if err != nil {
		return "", false, &Error{Map: t.Name(), Key: key, Temporary: true, Err: err}
	}
	if ok && v == "" {
		return "", false, &Error{Map: t.Name(), Key: key, Err: ErrEmptyValue}
	}
	if ok && !utf8.ValidString(v) {
		// A $n that cut a multi-byte character in half (Postfix matches
		// bytes): Postfix refuses the value and the query fails.
		t.opts.Warnf("", 0, "%s:%s: key \"%s\": non-UTF-8 value \"%s\": malformed UTF-8 or invalid codepoint", t.typ, t.name, rePrintable(key), rePrintable(v))
		return "", false, &Error{Map: t.Name(), Key: key, Err: reErrNonUTF8Value}
	}
	return v, ok, nil
}

// reErrNonUTF8Value is the error of a lookup whose result is not UTF-8.
var reErrNonUTF8Value = errors.New("query error: result is not valid UTF-8")

// rePrintable replaces what cannot be shown in a log line with '?'.
func rePrintable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || r < 0x20 || r == 0x7f {
			b.WriteByte('?')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// reLine is one logical line of a table source with the number of its first
// physical line.
type reLine struct {
	line int
	text string
}

// reLogicalLines splits a table file into logical lines the way Postfix's
// readllines() does: a line that starts with whitespace continues the
// previous one (its text is appended as is, leading whitespace included);
// empty lines and lines whose first non-blank character is '#' are skipped
// and do not end a logical line. An indented line with nothing before it is
// dropped with a warning.
func reLogicalLines(src, file string, opts *Options) []reLine {
	var out []reLine
	logicalLines(src, false, func(s string, line int, orphan bool) {
		// A CR of a CRLF file ends the logical line as white space does.
		s = trimRightSpace(s)
		if orphan {
			// Postfix joins the indented lines at the top of a file into
			// one logical line, warns once, and shows at most 30
			// characters of it.
			if len(s) > 30 {
				s = s[:30] + "..."
			}
			opts.Warnf(file, 0, "logical line must not start with whitespace: \"%s\"", s)
			return
		}
		out = append(out, reLine{line, s})
	})
	return out
}

// reSplitInline splits the Postfix 3.7 inline form "{ {rule}, {rule} }" into
// rules, numbered from 1 as Postfix numbers them in warnings.
func reSplitInline(name string) ([]reLine, error) {
	inner, err := reExtPar(name)
	if err != nil {
		return nil, err
	}
	var out []reLine
	n := 0
	s := inner
	for {
		s = strings.TrimLeft(s, ", \t\r\n")
		if s == "" {
			break
		}
		// A token runs to the next separator outside braces.
		depth, i := 0, 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '{' {
				depth++
			} else if c == '}' {
				depth--
			} else if depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
				break
			}
		}
		tok := s[:i]
		s = s[i:]
		n++
		if tok[0] != '{' {
			return nil, fmt.Errorf("no '{' at start of text in \"%s\"", tok)
		}
		body, err := reExtPar(tok)
		if err != nil {
			return nil, err
		}
		if body == "" {
			continue
		}
		out = append(out, reLine{n, body})
	}
	return out, nil
}

// reExtPar strips one level of braces from s, which must start with '{',
// and trims the inside; text after the closing brace is an error.
func reExtPar(s string) (string, error) {
	i := braceEnd(s)
	if i < 0 {
		return "", fmt.Errorf("missing '}' in \"%s\"", s)
	}
	if strings.TrimSpace(s[i+1:]) != "" {
		return "", fmt.Errorf("syntax error after '}' in \"%s\"", s)
	}
	return strings.TrimSpace(s[1:i]), nil
}

// Rule kinds.
const (
	reKindMatch = iota
	reKindIf
	reKindEndif
)

// reRule is one compiled rule.
type reRule struct {
	kind   int
	line   int
	m1, m2 *reMatcher // m2: the legacy "/re1/!/re2/" second pattern
	neg1   bool
	neg2   bool
	result []rePart // nil for if/endif
	subst  bool     // result uses $n
	end    int      // for if: index of the matching endif (or len(rules))
	lit    string   // required literal (ASCII-lowercased bytes), "" if none
	litB   []byte   // lit as bytes
	extra  bool     // endif followed by text
}

// rePart is a piece of a result: literal text, or a group reference.
type rePart struct {
	lit string
	idx int // > 0: group number
}

// reMatcher runs one compiled pattern. Exactly one of goRE and re2 is set,
// except that a pcre rule may carry both: goRE for yes/no questions, re2 when
// captures are needed.
type reMatcher struct {
	goRE    *regexp.Regexp
	re2     *regexp2.Regexp
	ngroups int
	lit     string // required literal, ASCII-lowercased, "" if unknown
}

// reKey is a lookup key prepared once for all rules.
type reKey struct {
	orig   string
	mapped string // bytes >= 0x80 turned into private-use runes
	runes  []rune // lazily built for regexp2
}

func reMapKey(key string) string {
	i := 0
	for i < len(key) && key[i] < 0x80 {
		i++
	}
	if i == len(key) {
		return key
	}
	var b strings.Builder
	b.Grow(len(key) * 3)
	b.WriteString(key[:i])
	for ; i < len(key); i++ {
		c := key[i]
		if c < 0x80 {
			b.WriteByte(c)
		} else {
			b.WriteRune(rePUA + rune(c))
		}
	}
	return b.String()
}

// reUnmap turns a mapped string back into the original bytes.
func reUnmap(s string) string {
	i := 0
	for i < len(s) && s[i] < 0x80 {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s[:i])
	for _, r := range s[i:] {
		if r >= rePUA+0x80 && r <= rePUA+0xFF {
			b = append(b, byte(r-rePUA))
		} else {
			b = utf8.AppendRune(b, r)
		}
	}
	return string(b)
}

func (k *reKey) getRunes() []rune {
	if k.runes == nil {
		k.runes = make([]rune, len(k.orig))
		for i := 0; i < len(k.orig); i++ {
			c := k.orig[i]
			if c < 0x80 {
				k.runes[i] = rune(c)
			} else {
				k.runes[i] = rePUA + rune(c)
			}
		}
	}
	return k.runes
}

// match reports whether the pattern matches; with caps it also returns the
// groups (index 0 is the whole match; "" for a group that took no part).
func (m *reMatcher) match(k *reKey, caps bool) (bool, []string, error) {
	if m.goRE != nil && (!caps || m.re2 == nil) {
		if !caps {
			return m.goRE.MatchString(k.mapped), nil, nil
		}
		loc := m.goRE.FindStringSubmatchIndex(k.mapped)
		if loc == nil {
			return false, nil, nil
		}
		g := make([]string, len(loc)/2)
		for i := range g {
			if loc[2*i] >= 0 {
				g[i] = reUnmap(k.mapped[loc[2*i]:loc[2*i+1]])
			}
		}
		return true, g, nil
	}
	if !caps {
		ok, err := m.re2.MatchRunes(k.getRunes())
		return ok, nil, err
	}
	mt, err := m.re2.FindRunesMatch(k.getRunes())
	if err != nil || mt == nil {
		return false, nil, err
	}
	g := make([]string, m.ngroups+1)
	for i := range g {
		grp := mt.GroupByNumber(i)
		if grp != nil && len(grp.Captures) > 0 {
			g[i] = reUnmap(string(grp.Runes()))
		}
	}
	return true, g, nil
}

// reRuleSet is a loaded table with its prefilter index.
type reRuleSet struct {
	rules []reRule
	// always: rules that must be looked at whatever the key (if/endif,
	// negated rules, rules without a usable literal). lits maps a trigram
	// of ASCII-lowercased bytes to the rules whose required literal holds
	// it.
	always []uint64
	tri    map[uint32][]int32
}

// lookup evaluates the rules in file order; the first match wins. With
// fast=false every rule is tried one by one, as Postfix does (the reference
// that tests compare the prefiltered path against).
func (rs *reRuleSet) lookup(key string, fast bool) (string, bool, error) {
	k := &reKey{orig: key, mapped: reMapKey(key)}
	// The prefilter's buffers live on the stack for ordinary keys and
	// tables (up to 256 bytes, 2048 rules).
	var lowerBuf [256]byte
	var candBuf [32]uint64
	var cand []uint64
	var lower []byte
	if fast && rs.tri != nil {
		lower = lowerBuf[:0]
		if len(key) > len(lowerBuf) {
			lower = make([]byte, 0, len(key))
		}
		for i := 0; i < len(key); i++ {
			c := key[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower = append(lower, c)
		}
		if len(rs.always) <= len(candBuf) {
			cand = candBuf[:len(rs.always)]
		} else {
			cand = make([]uint64, len(rs.always))
		}
		copy(cand, rs.always)
		for i := 0; i+3 <= len(lower); i++ {
			t := uint32(lower[i])<<16 | uint32(lower[i+1])<<8 | uint32(lower[i+2])
			for _, r := range rs.tri[t] {
				cand[r>>6] |= 1 << (uint(r) & 63)
			}
		}
	}
	n := len(rs.rules)
	for i := 0; i < n; i++ {
		if cand != nil {
			i = reNextBit(cand, i)
			if i >= n {
				break
			}
		}
		r := &rs.rules[i]
		switch r.kind {
		case reKindEndif:
			continue
		case reKindIf:
			ok, _, err := r.m1.match(k, false)
			if err != nil {
				return "", false, fmt.Errorf("line %d: %w", r.line, err)
			}
			if ok == r.neg1 {
				i = r.end // skip to the matching endif
			}
			continue
		}
		if cand != nil && r.lit != "" && !bytes.Contains(lower, r.litB) {
			continue
		}
		ok, groups, err := r.m1.match(k, r.subst)
		if err != nil {
			return "", false, fmt.Errorf("line %d: %w", r.line, err)
		}
		if ok == r.neg1 {
			continue
		}
		if r.m2 != nil {
			ok2, _, err := r.m2.match(k, false)
			if err != nil {
				return "", false, fmt.Errorf("line %d: %w", r.line, err)
			}
			if ok2 == r.neg2 {
				continue
			}
		}
		return reExpand(r.result, groups), true, nil
	}
	return "", false, nil
}

// reNextBit returns the first set bit >= i, or a value >= 64*len(b).
func reNextBit(b []uint64, i int) int {
	w := i >> 6
	if w >= len(b) {
		return len(b) << 6
	}
	x := b[w] >> (uint(i) & 63)
	if x != 0 {
		return i + bits.TrailingZeros64(x)
	}
	for w++; w < len(b); w++ {
		if b[w] != 0 {
			return w<<6 + bits.TrailingZeros64(b[w])
		}
	}
	return len(b) << 6
}

func reExpand(parts []rePart, groups []string) string {
	if len(parts) == 1 && parts[0].idx == 0 {
		return parts[0].lit
	}
	var b strings.Builder
	for _, p := range parts {
		if p.idx > 0 {
			if p.idx < len(groups) {
				b.WriteString(groups[p.idx])
			}
		} else {
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// reBuild parses and compiles every logical line, then links if/endif
// blocks and builds the prefilter index.
func reBuild(typ, name string, lines []reLine, opts *Options) *reRuleSet {
	rs := &reRuleSet{}
	label := typ + " map " + name
	var stack []int
	for _, ln := range lines {
		r, ok := reParseRule(typ, label, ln, opts)
		if !ok {
			continue
		}
		switch r.kind {
		case reKindIf:
			stack = append(stack, len(rs.rules))
		case reKindEndif:
			if len(stack) == 0 {
				opts.Warnf(label, ln.line, "ignoring ENDIF without matching IF")
				continue
			}
			if r.extra {
				opts.Warnf(label, ln.line, "ignoring extra text after ENDIF")
			}
			rs.rules[stack[len(stack)-1]].end = len(rs.rules)
			stack = stack[:len(stack)-1]
		}
		rs.rules = append(rs.rules, r)
	}
	for j := len(stack) - 1; j >= 0; j-- {
		i := stack[j]
		opts.Warnf(label, rs.rules[i].line, "IF has no matching ENDIF")
		rs.rules[i].end = len(rs.rules)
	}
	rs.index()
	return rs
}

// index builds the literal prefilter: each positive rule whose pattern
// requires a literal of three bytes or more is filed under one trigram of
// it; every other rule is always a candidate.
func (rs *reRuleSet) index() {
	n := len(rs.rules)
	rs.always = make([]uint64, (n+63)/64)
	rs.tri = make(map[uint32][]int32)
	// Count trigram use to file each rule under its rarest trigram.
	count := make(map[uint32]int)
	for i := range rs.rules {
		r := &rs.rules[i]
		if r.kind == reKindMatch && !r.neg1 && r.m1.lit != "" && len(r.m1.lit) >= 3 {
			r.lit, r.litB = r.m1.lit, []byte(r.m1.lit)
			for j := 0; j+3 <= len(r.lit); j++ {
				count[reTri(r.lit[j:])]++
			}
		}
	}
	for i := range rs.rules {
		r := &rs.rules[i]
		if r.lit == "" {
			rs.always[i>>6] |= 1 << (uint(i) & 63)
			continue
		}
		best, bestN := uint32(0), -1
		for j := 0; j+3 <= len(r.lit); j++ {
			t := reTri(r.lit[j:])
			if bestN < 0 || count[t] < bestN {
				best, bestN = t, count[t]
			}
		}
		rs.tri[best] = append(rs.tri[best], int32(i))
	}
}

func reTri(s string) uint32 { return uint32(s[0])<<16 | uint32(s[1])<<8 | uint32(s[2]) }

// reParseRule parses one logical line. ok=false means the line produced no
// rule (a warning has been given, or the line is not a rule).
func reParseRule(typ, label string, ln reLine, opts *Options) (reRule, bool) {
	p := ln.text
	r := reRule{line: ln.line}
	isWord := func(s, w string) bool {
		return len(s) >= len(w) && strings.EqualFold(s[:len(w)], w) && (len(s) == len(w) || !isAlnum(s[len(w)]))
	}
	switch {
	case isWord(p, "endif"):
		// The extra-text warning comes after the nesting check (reBuild).
		r.extra = strings.TrimSpace(p[5:]) != ""
		r.kind = reKindEndif
		return r, true
	case isWord(p, "if"):
		r.kind = reKindIf
		rest := strings.TrimLeft(p[2:], " \t\r\v\f")
		if rest == "" {
			opts.Warnf(label, ln.line, "no regexp: skipping this rule")
			return r, false
		}
		neg, pat, flags, rest, ok := reGetPattern(typ, label, ln.line, rest, opts)
		if !ok {
			return r, false
		}
		rest = strings.TrimSpace(rest)
		if rest != "" {
			opts.Warnf(label, ln.line, "ignoring extra text after IF statement: \"%s\"", rest)
			opts.Warnf(label, ln.line, "do not prepend whitespace to statements between IF and ENDIF")
		}
		m, ok := reCompile(typ, label, ln.line, pat, flags, false, opts)
		if !ok {
			return r, false
		}
		r.m1, r.neg1 = m, neg
		return r, true
	}
	if isAlnum(p[0]) {
		opts.Warnf(label, ln.line, "ignoring unrecognized request")
		return r, false
	}
	neg, pat, flags, rest, ok := reGetPattern(typ, label, ln.line, p, opts)
	if !ok {
		return r, false
	}
	// The legacy regexp: form "/re1/!/re2/": the second pattern must not
	// match.
	// The '!' is the first of the second pattern's negations, so "!!/re2/"
	// asks for re2 to match.
	var pat2, flags2 string
	var neg2, legacy bool
	if typ == "regexp" && rest != "" && rest[0] == '!' {
		neg2, pat2, flags2, rest, ok = reGetPattern(typ, label, ln.line, rest, opts)
		if !ok {
			return r, false
		}
		legacy = true
	}
	result := strings.TrimSpace(rest)
	if result == "" {
		opts.Warnf(label, ln.line, "no replacement text: using empty string")
	}
	parts, maxSub, ok := reParseResult(typ, label, ln.line, result, opts)
	if !ok {
		return r, false
	}
	if maxSub > 0 && neg {
		opts.Warnf(label, ln.line, "$number found in negative match replacement text: skipping this rule")
		return r, false
	}
	if maxSub > 0 && opts.NoSubstitution {
		opts.Warnf(label, ln.line, "regular expression substitution is not allowed: skipping this rule")
		return r, false
	}
	m1, ok := reCompile(typ, label, ln.line, pat, flags, maxSub > 0, opts)
	if !ok {
		return r, false
	}
	if maxSub > m1.ngroups {
		opts.Warnf(label, ln.line, "out of range replacement index \"%d\": skipping this rule", int32(uint32(maxSub)))
		return r, false
	}
	if legacy {
		m2, ok := reCompile(typ, label, ln.line, pat2, flags2, false, opts)
		if !ok {
			return r, false
		}
		r.m2, r.neg2 = m2, neg2
	}
	r.kind, r.m1, r.neg1, r.result, r.subst = reKindMatch, m1, neg, parts, maxSub > 0
	return r, true
}

// reGetPattern reads "[!...]<d>pattern<d>flags" from the start of s. A
// backslash protects the next character from ending the pattern; the
// backslash itself stays in the pattern the engine sees (so "\." in a
// ".pat." rule still means a literal dot).
func reGetPattern(typ, label string, line int, s string, opts *Options) (neg bool, pat, flags, rest string, ok bool) {
	for len(s) > 0 && (s[0] == '!' || isSpace(s[0])) {
		if s[0] == '!' {
			neg = !neg
		}
		s = s[1:]
	}
	if s == "" {
		opts.Warnf(label, line, "no regexp: skipping this rule")
		return
	}
	d := s[0]
	i := 1
	for ; i < len(s); i++ {
		if s[i] == '\\' {
			if i+1 < len(s) {
				i++
				continue
			}
			i = len(s)
			break
		}
		if s[i] == d {
			break
		}
	}
	if i >= len(s) {
		// dict_pcre words this one differently from dict_regexp.
		verb := "skipping"
		if typ == "pcre" {
			verb = "ignoring"
		}
		opts.Warnf(label, line, "no closing regexp delimiter \"%c\": %s this rule", d, verb)
		return
	}
	pat = s[1:i]
	s = s[i+1:]
	j := 0
	// regexp: flags may be followed by the legacy "!/re2/"; pcre: has no
	// legacy form, so a '!' there is an unknown option.
	for j < len(s) && !isSpace(s[j]) && !(typ == "regexp" && s[j] == '!') {
		j++
	}
	flags, rest = s[:j], s[j:]
	valid := "imx"
	if typ == "pcre" {
		valid = "imsxAEUX"
	}
	for k := 0; k < len(flags); k++ {
		if strings.IndexByte(valid, flags[k]) < 0 {
			opts.Warnf(label, line, "unknown regexp option \"%c\": skipping this rule", flags[k])
			return
		}
	}
	return neg, pat, flags, rest, true
}

// reParseResult splits a result into literal text and $n references
// (regexp_table(5): $1..$9, ${n}, $(n), $$). maxSub is the highest group
// referenced.
func reParseResult(typ, label string, line int, s string, opts *Options) ([]rePart, int, bool) {
	var parts []rePart
	var lit strings.Builder
	maxSub := 0
	bad := func() ([]rePart, int, bool) {
		opts.Warnf(label, line, "bad replacement syntax: skipping this rule")
		return nil, 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			lit.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			lit.WriteByte('$')
			i++
			continue
		}
		var name string
		switch {
		case i+1 < len(s) && (s[i+1] == '{' || s[i+1] == '('):
			closer := byte('}')
			if s[i+1] == '(' {
				closer = ')'
			}
			j := strings.IndexByte(s[i+2:], closer)
			if j < 0 {
				opts.Warnf("", 0, "truncated macro reference: \"%s\"", s)
				return bad()
			}
			name = s[i+2 : i+2+j]
			i += 2 + j
		default:
			j := i + 1
			for j < len(s) && (isAlnum(s[j]) || s[j] == '_') {
				j++
			}
			name = s[i+1 : j]
			i = j - 1
		}
		if name == "" {
			opts.Warnf("", 0, "empty macro name: \"%s\"", s)
			return bad()
		}
		if strings.Trim(name, "0123456789") != "" {
			opts.Warnf(label, line, "non-numeric replacement index \"%s\"", name)
			return bad()
		}
		// Postfix converts with atoi() into an int and compares it
		// unsigned: mirror that for absurdly long numbers.
		v, err := strconv.ParseInt(name, 10, 64)
		if err != nil {
			v = 1<<63 - 1
		}
		n := int(uint32(int32(v)))
		if n == 0 {
			// dict_regexp and dict_pcre spell this one differently.
			if typ == "pcre" {
				opts.Warnf(label, line, "out of range replacement index \"%s\"", name)
			} else {
				opts.Warnf(label, line, "out-of-range replacement index \"%s\"", name)
			}
			return bad()
		}
		if lit.Len() > 0 {
			parts = append(parts, rePart{lit: lit.String()})
			lit.Reset()
		}
		parts = append(parts, rePart{idx: n})
		if n > maxSub {
			maxSub = n
		}
	}
	if lit.Len() > 0 || len(parts) == 0 {
		parts = append(parts, rePart{lit: lit.String()})
	}
	return parts, maxSub, true
}

// reCompile compiles one pattern of either type. caps says whether the
// rule's result needs the groups.
func reCompile(typ, label string, line int, pat, flags string, caps bool, opts *Options) (*reMatcher, bool) {
	if typ == "pcre" {
		return rePCRECompile(label, line, pat, flags, caps, opts)
	}
	icase, newline, extended := true, false, true
	for i := 0; i < len(flags); i++ {
		switch flags[i] {
		case 'i':
			icase = !icase
		case 'm':
			newline = !newline
		case 'x':
			extended = !extended
		}
	}
	tr, errText := reTranslatePOSIX(pat, extended, icase, newline)
	if errText != "" {
		opts.Warnf(label, line, "%s", errText)
		return nil, false
	}
	m := &reMatcher{ngroups: tr.ngroups}
	if !tr.backtrack {
		re, err := regexp.Compile(tr.goExpr)
		if err == nil {
			re.Longest()
			m.goRE = re
			m.lit = reRequiredLiteral(tr.goExpr)
			return m, true
		}
	}
	// Back-references, \< and \>, or a repeat count beyond RE2's limit: run
	// on the backtracking engine.
	re2, err := regexp2.Compile(tr.re2Expr, regexp2.None)
	if err != nil {
		opts.Warnf(label, line, "%s", "Regular expression too big")
		return nil, false
	}
	re2.MatchTimeout = reMatchTimeout
	m.re2 = re2
	return m, true
}

// reRequiredLiteral finds a literal (ASCII-lowercased bytes) that every
// match of the Go pattern expr must contain, or "".
func reRequiredLiteral(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	lit := reReqLit(re.Simplify())
	var b []byte
	for _, r := range lit {
		switch {
		case r < 0x80:
			c := byte(r)
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
		case r >= rePUA+0x80 && r <= rePUA+0xFF:
			b = append(b, byte(r-rePUA))
		default:
			// A rune outside our byte mapping (cannot come from a
			// pattern we built); give up on the literal.
			return ""
		}
	}
	return string(b)
}

// reReqLit returns the longest literal run that every match of re contains.
func reReqLit(re *syntax.Regexp) []rune {
	switch re.Op {
	case syntax.OpLiteral:
		return re.Rune
	case syntax.OpCapture:
		return reReqLit(re.Sub[0])
	case syntax.OpPlus:
		return reReqLit(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return reReqLit(re.Sub[0])
		}
	case syntax.OpConcat:
		var best, run []rune
		for _, s := range re.Sub {
			for s.Op == syntax.OpCapture {
				s = s.Sub[0]
			}
			if s.Op == syntax.OpLiteral {
				run = append(run, s.Rune...)
				continue
			}
			if len(run) > len(best) {
				best = run
			}
			run = nil
			if l := reReqLit(s); len(l) > len(best) {
				best = l
			}
		}
		if len(run) > len(best) {
			best = run
		}
		return best
	}
	return nil
}

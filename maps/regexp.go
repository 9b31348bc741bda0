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
// Keys are matched as bytes whatever their encoding, as cleanup(8) does
// with header_checks and body_checks and as postmap -q does with
// smtputf8_enable = no; results are returned as the bytes they hold.
//
// Lookups try the rules in file order, first match wins, as Postfix does,
// but skip rules that cannot match (regexp_filter.go): every pattern gets
// a filter of facts each matching key has (literal sets from alternations,
// prefixes, lengths, byte classes, back-reference shapes), rules are
// indexed by the trigrams of their literals and the first bytes of their
// prefixes, and patterns that only regexp2 can run are first tried as a Go
// superset. TestRegexpPrefilter, TestRegexpPrefilterOracle and the fuzz
// targets check this against plain one-by-one evaluation and postmap.
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
//   - a regexp2 match that runs longer than reMatchTimeout (10 s) fails
//     the lookup with a temporary error; PCRE2 would go on until its
//     backtracking limit.

import (
	"context"
	"fmt"
	"io/fs"
	"math/bits"
	"regexp"
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
// for a table error. It is generous because a busy machine must not turn a
// good message into a deferred one; the prefilters keep regexp2 off most
// keys anyway. A variable so that tests can shorten it.
var reMatchTimeout = 10 * time.Second

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
	// Keys are matched as bytes, whatever their encoding: that is what
	// Postfix's cleanup does with header_checks and body_checks (a
	// Latin-1 Subject is matched), and what postmap -q does with
	// smtputf8_enable = no. (postmap -q with smtputf8_enable = yes refuses
	// non-UTF-8 keys and results; a caller that wants that checks the key
	// itself.)
	rs := t.rules.Load()
	v, ok, err := rs.lookup(key, true)
	if err != nil {
		return "", false, &Error{Map: t.Name(), Key: key, Temporary: true, Err: err}
	}
	if ok && v == "" {
		return "", false, &Error{Map: t.Name(), Key: key, Err: ErrEmptyValue}
	}
	return v, ok, nil
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
	f       *reFilter // what every matching key has; nil: nothing known
	// sup: for a pattern only regexp2 runs, Go's engine running a superset
	// of it (reSuperset); a key it does not match cannot match.
	sup *regexp.Regexp
	// goCaps: a pcre rule whose captures Go's engine gives exactly as
	// PCRE does (reCapturesPlain), so regexp2 is not needed at all.
	goCaps bool
	// split answers yes/no for a Go-served pattern of the form
	// \A literal .* rest (reSplitDotStar).
	split *reSplit
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
	if m.split != nil && !m.split.match(k.mapped) {
		return false, nil, nil
	}
	if m.split != nil && !caps {
		return true, nil, nil
	}
	if m.goRE != nil && caps && m.re2 != nil && !m.goCaps && m.split == nil && !m.goRE.MatchString(k.mapped) {
		// The Go engine answers "no" for the pcre rules it may serve;
		// only a match needs regexp2, for its captures.
		return false, nil, nil
	}
	if m.goRE != nil && (!caps || m.re2 == nil || m.goCaps) {
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
	// negated rules, rules without a literal set of three bytes or more).
	// tri maps a trigram of ASCII-lowercased bytes to the rules filed
	// under it (each literal of a rule's set files it under the rarest
	// trigram of that literal); bloom has a bit for each such trigram, so
	// that most trigrams of a key cost no map access.
	always []uint64
	tri    map[uint32][]int32
	bloom  []uint64
	// first: rules whose key must start with one of a few literals, by
	// the (lowered) first byte of each.
	first [256][]int32
}

// reKeyPool holds key summaries with their buffers.
var reKeyPool = sync.Pool{New: func() any { return &reKeyInfo{} }}

// reKeyPut returns a key summary to the pool, without its key, and
// without a buffer grown for an unusually long key.
func reKeyPut(ki *reKeyInfo) {
	ki.key, ki.lower = "", nil
	if cap(ki.buf) > 64<<10 {
		ki.buf = nil
	}
	reKeyPool.Put(ki)
}

// reBloomBit is the bit of trigram t in reRuleSet.bloom (1<<16 bits).
func reBloomBit(t uint32) uint32 { return (t * 2654435761) >> 16 }

// lookup evaluates the rules in file order; the first match wins. With
// fast=false every rule is tried one by one, as Postfix does (the reference
// that tests compare the prefiltered path against).
func (rs *reRuleSet) lookup(key string, fast bool) (string, bool, error) {
	k := &reKey{orig: key, mapped: reMapKey(key)}
	// The candidate set lives on the stack for tables of up to 2048
	// rules; the key summary comes from a pool, so that its buffer is
	// reused from lookup to lookup.
	var candBuf [32]uint64
	var cand []uint64
	var ki *reKeyInfo
	if fast {
		ki = reKeyPool.Get().(*reKeyInfo)
		defer reKeyPut(ki)
		ki.init(key, ki.buf)
		ki.buf = ki.lower
		lower := ki.lower
		if len(rs.always) <= len(candBuf) {
			cand = candBuf[:len(rs.always)]
		} else {
			cand = make([]uint64, len(rs.always))
		}
		copy(cand, rs.always)
		if len(lower) > 0 {
			for _, r := range rs.first[lower[0]] {
				cand[r>>6] |= 1 << (uint(r) & 63)
			}
		}
		if len(rs.tri) > 0 {
			for i := 0; i+3 <= len(lower); i++ {
				t := uint32(lower[i])<<16 | uint32(lower[i+1])<<8 | uint32(lower[i+2])
				if h := reBloomBit(t); rs.bloom[h>>6]&(1<<(h&63)) == 0 {
					continue
				}
				for _, r := range rs.tri[t] {
					cand[r>>6] |= 1 << (uint(r) & 63)
				}
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
			ok, _, err := r.m1.matchF(k, false, ki)
			if err != nil {
				return "", false, fmt.Errorf("line %d: %w", r.line, err)
			}
			if ok == r.neg1 {
				i = r.end // skip to the matching endif
			}
			continue
		}
		ok, groups, err := r.m1.matchF(k, r.subst, ki)
		if err != nil {
			return "", false, fmt.Errorf("line %d: %w", r.line, err)
		}
		if ok == r.neg1 {
			continue
		}
		if r.m2 != nil {
			ok2, _, err := r.m2.matchF(k, false, ki)
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

// matchF is match after the pattern's filter: with a key summary (the fast
// path), a key the filter rules out is answered "no" without running the
// engine.
func (m *reMatcher) matchF(k *reKey, caps bool, ki *reKeyInfo) (bool, []string, error) {
	if ki != nil && m.f != nil && !m.f.possible(ki) {
		return false, nil, nil
	}
	if ki != nil && m.sup != nil && !m.sup.MatchString(k.mapped) {
		return false, nil, nil
	}
	return m.match(k, caps)
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

// index builds the literal prefilter: each positive rule whose filter
// has a literal set whose members are all three bytes or longer is filed
// under one trigram of each member; every other rule is always a
// candidate (and its filter is tested when it is visited).
func (rs *reRuleSet) index() {
	n := len(rs.rules)
	rs.always = make([]uint64, (n+63)/64)
	rs.tri = make(map[uint32][]int32)
	rs.bloom = make([]uint64, 1<<16/64)
	indexed := func(r *reRule) bool {
		if r.kind != reKindMatch || r.neg1 || r.m1.f == nil || r.m1.f.anyOf == nil {
			return false
		}
		for _, l := range r.m1.f.anyOf {
			if len(l) < 3 {
				return false
			}
		}
		return true
	}
	// Count trigram use to file each literal under its rarest trigram.
	count := make(map[uint32]int)
	for i := range rs.rules {
		if r := &rs.rules[i]; indexed(r) {
			for _, l := range r.m1.f.anyOf {
				for j := 0; j+3 <= len(l); j++ {
					count[reTri(string(l[j:]))]++
				}
			}
		}
	}
	for i := range rs.rules {
		r := &rs.rules[i]
		if r.kind == reKindMatch && !r.neg1 && r.m1.f != nil && r.m1.f.prefixes != nil && !r.m1.f.linePrefix {
			for _, p := range r.m1.f.prefixes {
				if lst := rs.first[p[0]]; len(lst) == 0 || lst[len(lst)-1] != int32(i) {
					rs.first[p[0]] = append(lst, int32(i))
				}
			}
			continue
		}
		if !indexed(r) {
			rs.always[i>>6] |= 1 << (uint(i) & 63)
			continue
		}
		for _, l := range r.m1.f.anyOf {
			best, bestN := uint32(0), -1
			for j := 0; j+3 <= len(l); j++ {
				t := reTri(string(l[j:]))
				if bestN < 0 || count[t] < bestN {
					best, bestN = t, count[t]
				}
			}
			if lst := rs.tri[best]; len(lst) == 0 || lst[len(lst)-1] != int32(i) {
				rs.tri[best] = append(lst, int32(i))
			}
			h := reBloomBit(best)
			rs.bloom[h>>6] |= 1 << (h & 63)
		}
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
			m.f = reBuildFilter(tr.goExpr)
			m.split = reSplitDotStar(tr.goExpr)
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
	m.f, m.sup = reSupersetFilter(tr.re2Expr)
	return m, true
}
